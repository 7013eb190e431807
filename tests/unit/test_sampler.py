"""The sampler on real processes (this test's own), with a scanner that injects races."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from listener.model import ProcessInfo
from listener.sampler import ProcEntry, ProcScanner, Sampler, descendants


def me() -> ProcessInfo:
    return ProcessInfo("tests", "me", os.getpid(), "RUNNING", time.time())


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class ScannerWithAGhostChild(ProcScanner):
    """A child that the scan saw but that exits before its memory is read."""

    def __init__(self, ghost: int) -> None:
        super().__init__()
        self.ghost = ghost

    def scan(self) -> dict[int, ProcEntry]:
        table = super().scan()
        table[self.ghost] = ProcEntry(ppid=os.getpid(), started=time.time())
        return table


def test_a_child_that_exits_between_scan_and_read_is_skipped_and_counted():
    ghost = dead_pid()
    for mode in ("sum", "each"):
        sampler = Sampler("rss", mode, ScannerWithAGhostChild(ghost))
        result = sampler.sample([me()])
        sample = result.samples["tests:me"]
        assert sample.value > 0
        assert ghost not in {u.pid for u in sample.units}
        assert result.errors["vanished"] == 1


def test_a_supervised_pid_that_is_gone_has_no_sample_and_is_counted():
    gone = ProcessInfo("tests", "gone", dead_pid(), "RUNNING", time.time())
    for mode in ("none", "sum", "each"):
        result = Sampler("rss", mode).sample([gone])
        assert result.samples == {}
        assert result.errors["vanished"] == 1


def test_processes_not_running_are_not_sampled():
    stopped = ProcessInfo("tests", "stopped", 0, "STOPPED", 0.0)
    assert Sampler().sample([stopped]).samples == {}


def test_pss_and_uss_are_read_and_labelled_with_the_measure_used():
    for measure in ("pss", "uss"):
        sample = Sampler(measure).sample([me()]).samples["tests:me"]
        assert sample.measure == measure
        assert 0 < sample.value <= Sampler("rss").sample([me()]).samples["tests:me"].value * 1.2


def test_descendants_are_listed_parents_first_and_cycles_do_not_hang():
    children = {1: [2, 3], 2: [4], 4: [1]}
    assert list(descendants(1, children)) == [2, 4, 3]
