"""ProcFiles: /proc files kept open across ticks read fresh content, notice a process that is
gone, never hold more descriptors than allowed, and close what is no longer watched."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import psutil
import pytest

from listener.model import ProcessInfo
from listener.sampler import PAGE_SIZE, ProcFiles, ProcScanner, Sampler


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_kept_file_reads_what_the_kernel_says_now():
    files = ProcFiles("/proc", "statm")
    first = files.read(os.getpid())
    grown = bytearray(64 * 2**20)  # touch 64 MiB: the resident count moves
    for i in range(0, len(grown), 4096):
        grown[i] = 1
    second = files.read(os.getpid())
    assert first is not None and second is not None
    assert int(second.split()[1]) - int(first.split()[1]) >= 60 * 2**20 // PAGE_SIZE
    files.close()


def test_a_process_that_is_gone_reads_none_and_its_file_is_closed():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    files = ProcFiles("/proc", "stat")
    assert files.read(child.pid) is not None
    before = open_fds()
    child.kill()
    child.wait()
    assert files.read(child.pid) is None
    assert open_fds() == before - 1


def test_never_more_descriptors_than_the_limit():
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    try:
        files = ProcFiles("/proc", "statm", limit=1)
        before = open_fds()
        for c in children:
            assert files.read(c.pid) is not None
        assert open_fds() == before + 1
        files.keep_only({children[1].pid})  # the kept one was children[0]: closed
        assert open_fds() == before
    finally:
        for c in children:
            c.kill()
            c.wait()


def test_the_sampler_keeps_only_the_files_of_what_it_watches():
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        infos = [ProcessInfo("g", f"p{i}", c.pid, "RUNNING", 0.0) for i, c in enumerate(children)]
        scanner = ProcScanner()
        sampler = Sampler("rss", "none", scanner)
        sampler.sample(infos)
        assert set(scanner.statm._fds) == {c.pid for c in children}
        sampler.sample(infos[:1])
        assert set(scanner.statm._fds) == {children[0].pid}
        scanner.close()
        assert not scanner.statm._fds
    finally:
        for c in children:
            c.kill()
            c.wait()


def test_rss_is_psutils_figure():
    sampler = Sampler("rss", "none")
    me = ProcessInfo("g", "me", os.getpid(), "RUNNING", 0.0)
    for _ in range(3):
        expected = psutil.Process().memory_info().rss
        value = sampler.sample([me]).samples["g:me"].value
        assert abs(value - expected) <= 16 * PAGE_SIZE  # the two reads are moments apart


@pytest.mark.parametrize("mode", ["sum", "each"])
def test_a_tree_is_read_with_kept_files_and_matches_psutil(mode: str) -> None:
    code = "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        time.sleep(30)\n" \
           "        os._exit(0)\ntime.sleep(30)"
    master = subprocess.Popen([sys.executable, "-c", code])
    try:
        proc = psutil.Process(master.pid)
        while len(proc.children()) < 3:
            pass
        info = ProcessInfo("g", "tree", master.pid, "RUNNING", proc.create_time())
        sampler = Sampler("rss", mode)
        for _ in range(2):  # the second tick reads through kept files
            sample = sampler.sample([info]).samples["g:tree"]
            rss = [p.memory_info().rss for p in [proc, *proc.children(recursive=True)]]
            assert sample.children == 3
            expected = sum(rss) if mode == "sum" else max(rss)
            assert abs(sample.value - expected) <= 64 * PAGE_SIZE
    finally:
        for p in psutil.Process(master.pid).children(recursive=True):
            p.kill()
        master.kill()
        master.wait()


def test_files_kept_for_a_mode_are_closed_after_a_reload_to_another():
    child = subprocess.Popen(["sleep", "30"])
    try:
        info = ProcessInfo("g", "p", child.pid, "RUNNING", 0.0)
        scanner = ProcScanner()
        Sampler("rss", "sum", scanner).sample([info])
        # statm is read for the watched tree only; stat for every process, up to the limit
        # (on a busy machine the child's may be past it)
        assert child.pid in scanner.statm._fds and scanner.stat._fds
        Sampler("pss", "none", scanner).sample([info])  # what Daemon._reload builds
        assert not scanner.stat._fds and not scanner.statm._fds
    finally:
        child.kill()
        child.wait()


def test_out_of_descriptors_the_kept_ones_are_given_back():
    children = [subprocess.Popen(["sleep", "30"]) for _ in range(6)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = ProcFiles("/proc", "statm", limit=100)
    fillers: list[int] = []
    try:
        for c in children[:4]:
            files.read(c.pid)
        assert len(files._fds) == 4
        while (fd := os.open("/dev/null", os.O_RDONLY)) < max(files._fds.values()):
            fillers.append(fd)  # no free descriptor below ours
        os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd, hard))  # none free at all
        assert files.read(children[4].pid) is not None  # EMFILE: ours closed, then it opens
        assert files.limit == 2 and len(files._fds) == 1
        assert files.read(children[5].pid) is not None
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in fillers:
            os.close(fd)
        files.close()
        for c in children:
            c.kill()
            c.wait()
