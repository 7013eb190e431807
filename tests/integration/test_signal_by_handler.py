"""A taskworker child gets the first of TERM and INT it has a handler for, read from its signal
mask just before the signal: real processes with each disposition, the test as their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from listener.core.model import SignalChild, Target
from listener.core.rows import ProcessRow
from listener.host.child_signals import ChildSignaller, Sent
from listener.host.procfs import ProcReader
from listener.web.stats import Stats
from tests.harness import wait_for

# each child says "ready" once its handlers are set, then waits; a handled signal is reported
# on stdout before it exits 0
CHILD = """
import signal, sys, time
def said(signum, frame):
    print(signal.Signals(signum).name, flush=True)
    sys.exit(0)
for name in sys.argv[1].split(","):
    if name:
        signal.signal(getattr(signal, name), said)
for name in sys.argv[2].split(","):
    if name:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""
TERM_INT = (int(signal.SIGTERM), int(signal.SIGINT))


@pytest.fixture
def child() -> Iterator:
    started: list[subprocess.Popen[str]] = []

    def start(catches: str, ignores: str = "") -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, catches, ignores],
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def send(proc: subprocess.Popen[str]) -> tuple[Sent, Stats]:
    stats = Stats()
    stats.observe([ProcessRow("jobs", "jobs", os.getpid(), "pss", 0, 1, 1)], now=0.0)
    started = ProcReader().stat(proc.pid).started  # type: ignore[union-attr]
    target = Target("jobs", "jobs", os.getpid(), memory=2, limit=1, measure="pss", rule="any")
    action = SignalChild(target, proc.pid, started, int(signal.SIGTERM), if_caught=TERM_INT)
    return ChildSignaller(stats).send(action), stats


@pytest.mark.parametrize("catches, expected", [
    ("SIGTERM", "SIGTERM"),  # taskbroker-client 0.20: finishes its task, then exits
    ("SIGINT", "SIGINT"),  # 26.5: KeyboardInterrupt unwinds and frees the queue's locks
    ("SIGINT,SIGTERM", "SIGTERM"),
])
def test_the_child_gets_the_first_signal_it_handles(child, catches: str, expected: str) -> None:
    proc = child(catches)
    sent, stats = send(proc)
    assert sent is Sent.YES
    assert proc.stdout.readline().strip() == expected
    assert proc.wait(10) == 0
    assert stats.snapshot().processes[0].child_signals == 1


def test_a_child_that_handles_neither_is_not_signalled(child) -> None:
    proc = child("SIGUSR1", ignores="SIGTERM,SIGINT")
    sent, stats = send(proc)
    assert sent is Sent.NOT_CAUGHT
    assert proc.poll() is None and stats.snapshot().processes[0].child_signals == 0


def test_the_reader_reads_the_mask_the_kernel_shows(child) -> None:
    proc = child("SIGTERM,SIGUSR2", ignores="SIGINT")
    caught = wait_for(lambda: ProcReader().caught_signals(proc.pid), what="the mask")
    assert {signal.SIGTERM, signal.SIGUSR2} <= caught and signal.SIGINT not in caught
    assert ProcReader().caught_signals(2**22 + 7) is None  # no such process
