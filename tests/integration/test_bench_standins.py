"""The benchmark's mixed shape (bench/standin.py, bench/sentry.py) under a real supervisord: the
listener recognises each stand-in as the server it stands in for, from the same evidence as the
real one, and judges it so. A benchmark of stand-ins read as plain trees would measure less
work than production asks."""

from __future__ import annotations

from collections.abc import Callable

from bench.standin import MIXED_COMMANDS, mixed_counts, mixed_problems, wait_mixed
from bench.ticks import InProcessDaemon, check_mixed
from listener.host.procfs import ProcReader
from tests.harness import Supervisord, program


def test_the_mixed_stand_ins_are_recognised_and_judged_as_their_servers(
        supervisord: Callable[[str], Supervisord]) -> None:
    counts = mixed_counts(len(MIXED_COMMANDS))
    assert counts == dict.fromkeys(MIXED_COMMANDS, 1)
    sv = supervisord("".join(program(g, MIXED_COMMANDS[g], counts[g]) for g in MIXED_COMMANDS))
    sv.wait_running()
    wait_mixed(sv.client.processes, timeout=60)
    assert mixed_problems(sv.client.processes()) == []
    # the Granian stand-in is `sentry run web`, a name that says nothing: only its map does
    assert "_granian" in ProcReader().native_modules(sv.pid("granian:granian"))

    ours = InProcessDaemon(sv.url, "auto")
    try:
        for _ in range(2):
            ours.tick()
        rows = {row.group: row for row in ours.stats.snapshot().processes}
        check_mixed(list(rows.values()))
    finally:
        ours.close()
    assert {g: (r.strategy, r.children) for g, r in rows.items()} == {
        "uwsgi": ("rss, each, HUP (auto: uwsgi)", 4),
        "celery": ("rss, each (auto: celery)", 4),
        "granian": ("rss, each, HUP to master (auto: granian)", 4),
        "taskworker": ("rss, each, TERM or INT, as caught (auto: taskworker)",
                       4),  # the resource tracker not counted
        "plain": ("rss", 0),
    }
