"""No target left stopped for good, a journal that survives its disk, a metrics port that cannot
starve the loop: faults tried against a real supervisord and the real listener process."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from listener.actions.journal import journal_name
from listener.core.recovery import RetryTiming
from tests.harness import hog, value, wait_for
from tests.integration.test_faults import journal_entries

FRAGILE = """
[program:fragile]
command=/bin/sh -c "test -e {flag} && exit 3; exec {hog}"
startsecs=1
{extra}
"""


def fragile(flag: Path, extra: str = "") -> str:
    return FRAGILE.format(flag=flag, hog=hog("--mb", 50), extra=extra)


# The retry path's times, shortened: the rules about time are checked in seconds, not minutes
# (test_faults.py runs the same path in the listener process with production's times).
FAST = RetryTiming(backoff_first=0.2, backoff_max=1.0, human_margin=1.0)


def gauge_stopped(lst) -> float | None:  # type: ignore[no-untyped-def]
    return value(lst.metrics(), "memwatch_stopped_not_running")


def failures(lst) -> float:  # type: ignore[no-untyped-def]
    return value(lst.metrics(), "memwatch_restart_failures_total", group="fragile",
                 process="fragile") or 0


def failing_restart(supervisord, built_listener, short_tmp, extra: str = ""):  # type: ignore[no-untyped-def]
    """`fragile` over its limit while its dependency is down: the listener (built with FAST
    timing) stops it, and its start fails. Returns (supervisord, listener, flag, pid before)
    after the first failure."""
    flag = short_tmp / "dependency-down"
    sv = supervisord(fragile(flag, extra))
    before = sv.wait_allocated({"fragile:fragile": 45})["fragile:fragile"]
    flag.touch()
    lst = built_listener("-p", "fragile=30MB", "--max-restarts", "1", server_url=sv.url,
                         timing=FAST)
    wait_for(ticking(lst, lambda: failures(lst) >= 1), timeout=60, interval=0.2,
             what="a failed start")
    return sv, lst, flag, before


def ticking(lst, condition):  # type: ignore[no-untyped-def]
    """A predicate for wait_for that sends a TICK before each look, as supervisord would."""
    def check():  # type: ignore[no-untyped-def]
        lst.tick()
        return condition()
    return check


def our_stop(short_tmp: Path) -> float:
    """When the listener's stop of fragile completed, as its journal says."""
    (entry,) = journal_entries(short_tmp / "state")
    return float(entry["stopped"])


def test_a_start_that_fails_through_supervisords_own_retries_is_seen_through_to_running(
        supervisord, built_listener, short_tmp):
    # supervisord's default startretries=3: our start fails, the process goes BACKOFF (a start
    # is refused ALREADY_STARTED while supervisord retries), then FATAL
    sv, lst, flag, before = failing_restart(supervisord, built_listener, short_tmp)
    # a second failure means the listener started it again after supervisord gave up
    wait_for(ticking(lst, lambda: failures(lst) >= 2 and gauge_stopped(lst) == 1),
             timeout=60, interval=0.2, what="a start after supervisord gave up, still failing")
    assert journal_entries(short_tmp / "state")[0]["namespec"] == "fragile:fragile"

    flag.unlink()  # the dependency is back: the listener, not a human, brings it back
    wait_for(ticking(lst, lambda: sv.infos()["fragile:fragile"]["statename"] == "RUNNING"
                     and gauge_stopped(lst) == 0),
             timeout=90, interval=0.2, what="fragile RUNNING again")
    assert sv.pid("fragile:fragile") != before
    # the journal on disk follows the listener's memory (the gauge) by a write and an fsync
    wait_for(lambda: journal_entries(short_tmp / "state") == [], what="the journal emptied on disk")


def test_failed_spawns_that_move_supervisords_stop_time_are_not_mistaken_for_a_human_stop(
        supervisord, built_listener, short_tmp, caplog):
    caplog.set_level(logging.INFO, logger="memwatch")
    sv, lst, flag, _ = failing_restart(supervisord, built_listener, short_tmp, "startretries=0")
    stopped = our_stop(short_tmp)

    def ours_until_spawns_failed_past_the_margin() -> bool:
        lst.tick()
        assert gauge_stopped(lst) == 1 and "by someone else" not in caplog.text  # every tick
        info = sv.infos()["fragile:fragile"]
        return (failures(lst) >= 2 and info["statename"] == "FATAL"
                and info["stop"] > stopped + FAST.human_margin)

    wait_for(ours_until_spawns_failed_past_the_margin, timeout=60, interval=0.2,
             what="failed spawns that moved the stop time past the human margin")

    flag.unlink()
    wait_for(ticking(lst, lambda: sv.infos()["fragile:fragile"]["statename"] == "RUNNING"
                     and gauge_stopped(lst) == 0),
             timeout=90, interval=0.2, what="fragile RUNNING again")


def test_a_human_stop_after_ours_ends_the_listeners_responsibility(supervisord, built_listener,
                                                                   short_tmp, caplog):
    caplog.set_level(logging.INFO, logger="memwatch")
    # startretries=100: supervisord keeps retrying (BACKOFF) for a long while
    sv, lst, flag, _ = failing_restart(supervisord, built_listener, short_tmp, "startretries=100")
    stopped = our_stop(short_tmp)
    # the human acts later than the human margin after our stop, as a human would
    wait_for(lambda: time.time() > stopped + FAST.human_margin, timeout=10,
             what="the human margin after our stop to pass")
    sv.rpc().supervisor.stopProcess("fragile:fragile")  # as supervisorctl stop, during BACKOFF
    flag.unlink()
    wait_for(ticking(lst, lambda: gauge_stopped(lst) == 0), timeout=60, interval=0.2,
             what="the listener letting go")
    for _ in range(3):
        lst.tick()
    assert sv.infos()["fragile:fragile"]["statename"] == "STOPPED"
    assert "by someone else" in caplog.text


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """path as a read-only bind mount of itself (as a disk remounted read-only)."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_pending_restart_is_finished_when_the_state_dir_cannot_be_written(
        supervisord, listener, short_tmp):
    sv = supervisord("""
[program:victim]
command=sleep 600
autostart=false
""")
    state = short_tmp / "state"
    state.mkdir()
    stopped = time.time() - 60
    (state / journal_name({}, sv.url)).write_text(json.dumps({"version": 1, "restarts": [
        {"namespec": "victim:victim", "pid": 4242, "began": stopped, "stopped": stopped}]}))
    with read_only(state):
        lst = listener("-a", "1GB", server_url=sv.url)
        wait_for(ticking(lst, lambda: sv.infos()["victim:victim"]["statename"] == "RUNNING"),
                 timeout=30, interval=0.2, what="victim started by the listener")
        assert "cannot write the restart journal" in lst.stderr()
        assert "finishing restarts left unfinished by a previous run" in lst.stderr()
        lst.close()


def test_a_hostile_journal_is_set_aside_and_the_listener_runs(supervisord, listener, short_tmp):
    sv = supervisord("""
[program:web]
command=sleep 600
""")
    state = short_tmp / "state"
    state.mkdir()
    journal = state / journal_name({}, sv.url)
    journal.write_text('{"version": 1, "restarts": [{"namespec": "web:web", "pid": 1e400, '
                       '"began": 1}]}')
    lst = listener("-a", "1GB", server_url=sv.url)
    lst.tick()
    assert value(lst.metrics(), "memwatch_supervisor_up") == 1
    assert "restart journal unreadable: set aside" in lst.stderr()
    assert "Traceback" not in lst.stderr()
    assert "1e400" in journal.with_name(journal.name + ".unreadable").read_text()


def test_idle_connections_to_the_metrics_port_cannot_starve_the_loop(supervisord, listener):
    sv = supervisord(f"""
[program:hog]
command={hog('--mb', 60)}
startsecs=0
""")
    before = sv.wait_allocated({"hog:hog": 55})["hog:hog"]
    # 64 descriptors: before bounded connections, ~60 idle clients took them all
    lst = listener("-p", "hog=30MB", "--max-restarts", "1", server_url=sv.url,
                   prefix=("prlimit", "--nofile=64:64"))
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", lst.metrics_port), timeout=5))
        fds = psutil.Process(lst.proc.pid).num_fds()
        assert fds < 48, f"{fds} descriptors held by the listener"
        # the restart needs descriptors: /proc reads, XML-RPC to supervisord, the journal
        lst.tick()
        after = wait_for(ticking(lst, lambda: sv.wait_running("hog:hog")["hog:hog"] != before
                                 and journal_entries(lst.root / "state") == []),
                         timeout=30, interval=0.2, what="hog restarted during the flood")
        assert after
    finally:
        for conn in idle:
            conn.close()
    samples = wait_for(lambda: lst.metrics(), timeout=30, what="a scrape once the idle ones left")
    assert value(samples, "memwatch_restarts_total", group="hog", process="hog") == 1
    assert value(samples, "memwatch_sample_errors_total", reason="unreadable") == 0
    assert "tick failed" not in lst.stderr() and "Traceback" not in lst.stderr()
