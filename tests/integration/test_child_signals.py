"""A child signal is a lifecycle on real processes: sent once to the child that went over,
waited for while the child finishes, and escalated once to a program restart if it never goes."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import psutil
import pytest

from tests.harness import PY, ROOT, hog, value, wait_for

pytestmark = pytest.mark.both_modes  # listing every tick, and the table from events

POOL = """
[program:pool]
command={command}
startsecs=0
"""
HUP = ("-p", "pool=40MB", "--children", "each", "--child-signal", "HUP")


def pool(drain: float) -> str:
    # a prefork master with 2 children; child 0 holds 65 MiB, and on SIGHUP it finishes its
    # "request" `drain` seconds later (never, if negative)
    return POOL.format(command=hog("--children", 2, "--child-mb", 5, "--grow-child", 0,
                                   "--grow-mb", 60, "--child-drain", drain))


def counter(lst, name: str) -> float:  # type: ignore[no-untyped-def]
    return value(lst.metrics(), name, group="pool", process="pool") or 0


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited, not reaped yet
    except psutil.NoSuchProcess:
        return True


def big_child(master: int) -> int:
    """The child that holds 65 MiB, once it does (right after the start both are small: taking
    the larger then can pick the wrong one)."""
    return wait_for(lambda: next((c.pid for c in psutil.Process(master).children()
                                  if c.memory_info().rss > 60 * 2**20), None),
                    what="a child at 65 MiB")


def test_a_child_that_drains_for_several_ticks_is_signalled_once(supervisord, listener):
    sv = supervisord(pool(drain=3))
    master = sv.wait_allocated({"pool:pool": 1})["pool:pool"]
    child = wait_for(lambda: psutil.Process(master).children() and big_child(master),
                     what="the children")
    wait_for(lambda: psutil.Process(child).memory_info().rss > 60 * 2**20, what="child at 65 MiB")
    lst = listener(*HUP, "--child-signal-timeout", "30s", server_url=sv.url)
    ticks = 0

    def gone() -> bool:
        nonlocal ticks
        lst.tick()
        ticks += 1
        return ended(child)

    wait_for(gone, timeout=30, interval=0.2, what="the signalled child to finish and exit")
    assert ticks > 5  # it drained for several ticks, still over its limit
    assert counter(lst, "memwatch_child_signals_total") == 1
    assert counter(lst, "memwatch_child_signal_escalations_total") == 0
    assert counter(lst, "memwatch_restarts_total") == 0
    assert sv.pid("pool:pool") == master
    assert lst.stderr().count("signalled child over its memory limit") == 1
    lst.tick()  # the first tick that no longer finds the child says how the signal ended
    gone_line = next(line for line in lst.stderr().splitlines() if "signalled child is gone" in line)
    assert f"child_pid={child}" in gone_line
    assert float(gone_line.split("seconds_after_signal=")[1].split()[0]) >= 2.5


def test_a_child_that_never_goes_is_escalated_once_to_a_program_restart(supervisord, listener):
    sv = supervisord(pool(drain=-1))
    master = sv.wait_allocated({"pool:pool": 1})["pool:pool"]
    child = wait_for(lambda: psutil.Process(master).children() and big_child(master),
                     what="the children")
    wait_for(lambda: psutil.Process(child).memory_info().rss > 60 * 2**20, what="child at 65 MiB")
    # one restart in the budget: the signal takes it; the escalation is the same incident
    lst = listener(*HUP, "--child-signal-timeout", "2s", "--max-restarts", "1",
                   server_url=sv.url)

    def escalated() -> bool:
        lst.tick()
        return counter(lst, "memwatch_child_signal_escalations_total") == 1

    wait_for(escalated, timeout=60, interval=0.2, what="the escalation")
    try:
        wait_for(lambda: sv.pid("pool:pool") not in (0, master), timeout=60, what="pool restarted")
    except AssertionError as exc:  # say what the listener and supervisord did
        raise AssertionError(f"{exc}\nlistener:\n{lst.stderr()[-3000:]}\n"
                             f"supervisord:\n{sv.log_text()[-2000:]}") from None
    wait_for(lambda: ended(child), what="the stubborn child gone with its program")
    for _ in range(10):  # the new big child: the budget is used up, nothing more happens
        lst.tick()
    assert counter(lst, "memwatch_child_signals_total") == 1
    assert counter(lst, "memwatch_child_signal_escalations_total") == 1
    assert counter(lst, "memwatch_restarts_total") == 1
    assert "its signalled child outlived --child-signal-timeout" in lst.stderr()


def test_a_dry_run_says_the_signal_and_never_takes_the_child_for_signalled(supervisord, listener):
    """--dry-run on a child-signal rule: no crash, the child is said once and never recorded as
    signalled (no `draining`, no "signalled child is gone", no escalation of a signal never sent)."""
    sv = supervisord(pool(drain=-1))
    master = sv.wait_allocated({"pool:pool": 1})["pool:pool"]
    child = wait_for(lambda: psutil.Process(master).children() and big_child(master),
                     what="the children")
    lst = listener(*HUP, "--child-signal-timeout", "1s", "--dry-run", server_url=sv.url)
    began = time.monotonic()
    verdicts = set()
    while time.monotonic() - began < 3:  # past the timeout: a recorded signal would escalate
        lst.tick()
        with urllib.request.urlopen(f"http://127.0.0.1:{lst.metrics_port}/status") as resp:
            rows = json.load(resp)["processes"]
        verdicts.update(r["verdict"] for r in rows if r["process"] == "pool")
    err = lst.stderr()
    assert "tick failed" not in err, err[-2000:]
    assert err.count("dry run: would signal child") == 1, err[-2000:]
    assert f"child_pid={child}" in err
    assert "signalled child is gone" not in err and "escalating_child" not in err
    assert verdicts == {"act"}, verdicts
    assert counter(lst, "memwatch_child_signals_total") == 0
    assert counter(lst, "memwatch_dry_run_actions_total") >= 3
    assert not ended(child) and sv.pid("pool:pool") == master


def test_check_listener_reads_a_drain_as_normal(supervisord, listener):
    """A probe on `check --listener`: 0 while the signalled worker drains, still over its
    limit (routine worker replacement, not an alert)."""
    sv = supervisord(pool(drain=-1))
    master = sv.wait_allocated({"pool:pool": 1})["pool:pool"]
    wait_for(lambda: psutil.Process(master).children() and big_child(master), what="the children")
    lst = listener(*HUP, "--child-signal-timeout", "1h", server_url=sv.url)
    url = f"http://127.0.0.1:{lst.metrics_port}"

    def verdict() -> str:
        lst.tick()
        with urllib.request.urlopen(url + "/status") as resp:
            return next(r["verdict"] for r in json.load(resp)["processes"] if r["process"] == "pool")

    wait_for(lambda: verdict() == "draining", timeout=30, interval=0.2, what="the drain")
    done = subprocess.run([PY, "-m", "listener", "check", "--listener", url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "draining" in done.stdout
