"""bench section 3 on a small layout of real pre-fork trees under a real supervisord: the trees
share their masters' memory, each variant walks the page tables it should, the few-over
variant pays for its over-limit children every tick, and nothing is left running."""

from __future__ import annotations

import psutil

from bench import pss, pssread
from bench.trees import LEAKY_CHILDREN, Layout, Program
from listener.host.figures import MIN_AGE

LAYOUT = Layout("test", (Program("web", 2, 3, 24),))
ROUNDS = 14  # the bench clock reaches 65 s: past the youngest age a figure is re-read at (30 s)


def test_section_3_walks_what_each_variant_should_and_leaves_nothing_running() -> None:
    said: list[str] = []
    run = pss.measure_layout(LAYOUT, pss.Plan(ROUNDS, 2, 1, 0), said.append, memmon=True)
    units = LAYOUT.count()
    assert run.units == units == 2 * 4 + LEAKY_CHILDREN + 1
    got = {t.variant: t for t in run.variants}
    assert got["rss"].walks == [0] * ROUNDS
    assert got["pss full"].walks == [units, units]
    bounded = got["pss bounded"]
    assert bounded.walks[0] == units  # everything at first sight
    assert bounded.walks[1:6] == [0] * 5  # nothing re-read before 30 s
    # then the oldest within the RSS pass's time: on a layout this small, a walk may cost more
    # than the whole pass, and none fits before MAX_AGE
    assert max(bounded.walks[1:]) < units
    over = got[f"pss bounded, {LEAKY_CHILDREN} over"]
    assert over.walks[0] == units
    assert all(w >= LEAKY_CHILDREN for w in over.walks)  # the leaky children, every tick
    assert bounded.at[-1] == (ROUNDS - 1) * pss.TICK >= MIN_AGE
    assert run.memmon is not None and len(run.memmon.wall) == 1
    leftovers = [p for p in psutil.process_iter(["cmdline"])
                 if "bench.prefork" in " ".join(p.info["cmdline"] or [])
                 and p.status() != psutil.STATUS_ZOMBIE]
    assert leftovers == []


def test_own_smaps_rollup_parse_reads_what_psutil_reads() -> None:
    proc = pssread.start_process(32)
    try:
        pss_, uss = pssread.rollup(proc.pid)
        full = psutil.Process(proc.pid).memory_full_info()
    finally:
        pssread.stop_process(proc)
    assert pss_ == full.pss
    assert uss == full.uss
    assert pss_ >= 32 << 20
