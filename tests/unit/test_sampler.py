"""The sampler on real processes (this test's own and its children), with readers that inject
races and failures."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil

from listener.core.model import ProcessInfo
from listener.core.rules import Rules, Strategy
from listener.core.servers import Server
from listener.host.procfs import ProcReader, ProcStat, descendants
from listener.host.sampler import Sampler
from listener.supervisord.rpc import boot_clock

GiB = 1024**3


def me(listed_at: float | None = None) -> ProcessInfo:
    return ProcessInfo("tests", "me", os.getpid(), "RUNNING", time.time(),
                       listed_at=boot_clock() if listed_at is None else listed_at)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class ReaderWithAGhostChild(ProcReader):
    """A child that the scan saw but that exits before its memory is read."""

    def __init__(self, ghost: int) -> None:
        super().__init__()
        self.ghost = ghost

    def scan(self) -> dict[int, ProcStat]:
        table = super().scan()
        table[self.ghost] = ProcStat(ppid=os.getpid(), state="S", since_boot=0.0, started=time.time())
        return table


class ReaderOutOfDescriptors(ProcReader):
    """Every read of one pid's files fails as with EMFILE."""

    def __init__(self, failing: int) -> None:
        super().__init__()
        self.failing = failing

    def _read(self, pid: int, name: str) -> bytes | None:
        if pid == self.failing:
            raise OSError(errno.EMFILE, "Too many open files")
        return super()._read(pid, name)


def test_a_child_that_exits_between_scan_and_read_is_skipped_and_counted():
    ghost = dead_pid()
    for mode in ("sum", "each"):
        sampler = Sampler(ReaderWithAGhostChild(ghost))
        result = sampler.sample([me()], Rules.uniform("rss", mode))
        sample = result.samples["tests:me"]
        assert sample.value > 0
        assert ghost not in {u.pid for u in sample.units}
        assert result.errors["vanished"] == 1


def test_a_supervised_pid_that_is_gone_has_no_sample_and_is_counted():
    gone = ProcessInfo("tests", "gone", dead_pid(), "RUNNING", time.time())
    for mode in ("none", "sum", "each"):
        result = Sampler().sample([gone], Rules.uniform("rss", mode))
        assert result.samples == {}
        assert result.errors["vanished"] == 1


def test_a_pid_that_started_after_the_listing_is_another_process_and_is_not_sampled():
    listed_before_this_process_began = boot_clock() - time.monotonic() - 3600  # long before
    for measure in ("rss", "pss"):
        for mode in ("none", "sum", "each"):
            listed = me(listed_at=listed_before_this_process_began)
            result = Sampler().sample([listed], Rules.uniform(measure, mode))
            assert result.samples == {}, (measure, mode)
            assert result.errors == {"pid_reused": 1}, (measure, mode)


@contextlib.contextmanager
def zombie_child() -> Iterator[int]:
    """A child of this process that has exited and is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while ProcReader().stat(child.pid).state != "Z":  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "child never exited"
        time.sleep(0.01)
    try:
        yield child.pid
    finally:
        child.wait()


def test_a_zombie_is_counted_as_such_not_sampled_as_zero_bytes():
    with zombie_child() as zombie:
        info = ProcessInfo("tests", "zombie", zombie, "RUNNING", time.time(), listed_at=boot_clock())
        for measure in ("rss", "pss"):
            for mode in ("none", "sum", "each"):
                result = Sampler().sample([info], Rules.uniform(measure, mode))
                assert result.samples == {}, (measure, mode)
                assert result.errors == {"zombie": 1}, (measure, mode)


def test_a_zombie_child_is_left_out_of_its_parents_tree():
    with zombie_child() as zombie:
        result = Sampler().sample([me()], Rules.uniform("rss", "each"))
        assert zombie not in {u.pid for u in result.samples["tests:me"].units}
        assert result.errors["zombie"] == 1


def test_one_failed_read_skips_one_pid_counted_and_the_others_are_sampled():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        listed = boot_clock()
        procs = [ProcessInfo("tests", "other", other.pid, "RUNNING", time.time(), listed_at=listed),
                 me(listed)]
        result = Sampler(ReaderOutOfDescriptors(other.pid)).sample(procs, Rules.uniform("rss", "none"))
        assert set(result.samples) == {"tests:me"}
        assert result.errors == {"unreadable": 1}
    finally:
        other.kill()
        other.wait()


def test_processes_not_running_are_not_sampled():
    stopped = ProcessInfo("tests", "stopped", 0, "STOPPED", 0.0)
    assert Sampler().sample([stopped], Rules()).samples == {}


def test_pss_and_uss_are_read_and_labelled_with_the_measure_used():
    for measure in ("pss", "uss"):
        sample = Sampler().sample([me()], Rules.uniform(measure)).samples["tests:me"]
        assert sample.measure == measure
        rss = Sampler().sample([me()], Rules.uniform("rss")).samples["tests:me"].value
        assert 0 < sample.value <= rss * 1.2


def test_rss_is_what_psutil_reads():
    sample = Sampler().sample([me()], Rules.uniform("rss")).samples["tests:me"]
    assert abs(sample.value - psutil.Process().memory_info().rss) < 8 * 2**20


def test_descendants_are_listed_parents_first_and_cycles_do_not_hang():
    children = {1: [2, 3], 2: [4], 4: [1]}
    assert list(descendants(1, children)) == [2, 4, 3]


@contextlib.contextmanager
def server_with_workers(argv0: str, workers: int = 2) -> Iterator[ProcessInfo]:
    """A process whose command line says `argv0`, with `workers` children of its own."""
    code = ("import subprocess, sys, time\n"
            f"kids = [subprocess.Popen([{sys.executable!r}, '-c', 'import time; time.sleep(60)'])"
            f" for _ in range({workers})]\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    master = subprocess.Popen([argv0, "-c", code], executable=sys.executable, stdout=subprocess.PIPE)
    try:
        assert master.stdout is not None and master.stdout.readline() == b"ready\n"
        yield ProcessInfo(argv0, argv0, master.pid, "RUNNING", time.time(), listed_at=boot_clock())
    finally:
        for child in psutil.Process(master.pid).children():
            child.kill()
        master.kill()
        master.wait()


def test_each_process_is_measured_as_its_own_rule_says_and_auto_as_its_server():
    auto = Strategy(measure="rss", children="auto")
    rules = Rules(programs=(("uwsgi", GiB, auto), ("plain", GiB, auto)),
                  groups=(("summed", GiB, Strategy(measure="uss", children="sum")),))
    with server_with_workers("uwsgi") as uwsgi, server_with_workers("plain") as plain, \
            server_with_workers("summed") as summed:
        samples = Sampler().sample([uwsgi, plain, summed], rules).samples
    web = samples["uwsgi:uwsgi"]
    assert (web.server, len(web.units), web.measure) == (Server.UWSGI, 3, "rss")  # each worker alone
    assert web.value == max(u.bytes for u in web.units)
    # a tree nothing says anything of: judged by its own pid only, and said to be unrecognised
    assert (samples["plain:plain"].server, samples["plain:plain"].units) == (Server.UNRECOGNISED, ())
    assert samples["plain:plain"].children == 0
    assert (samples["summed:summed"].children, samples["summed:summed"].measure) == (2, "uss")


def test_a_memwatch_listener_is_recognised_whatever_the_rule():
    with server_with_workers("sentry-memwatch", workers=0) as listener:
        sample = Sampler().sample([listener], Rules.uniform("rss")).samples["sentry-memwatch:sentry-memwatch"]
    assert sample.server is Server.MEMWATCH


def test_a_trees_cpu_time_counts_its_children_and_stays_counted_after_one_exits():
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    code = ("import subprocess, sys, time\n"
            f"subprocess.run([{sys.executable!r}, '-c', {burn!r}])\n"  # a child that burns and exits
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    master = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert master.stdout is not None and master.stdout.readline() == b"ready\n"
        info = ProcessInfo("tests", "tree", master.pid, "RUNNING", time.time(), listed_at=boot_clock())
        for mode in ("none", "sum", "each"):
            sample = Sampler().sample([info], Rules.uniform("rss", mode)).samples["tests:tree"]
            assert sample.cpu is not None and sample.cpu >= 0.3, mode  # the reaped child's 0.3 s
            if mode == "each":  # every pid's figure is there: the tree is their sum
                assert sample.tree == sum(u.bytes for u in sample.units)
    finally:
        master.kill()
        master.wait()


FORKSERVER_POOL = """
import multiprocessing, signal
def nothing(_):
    return None
if __name__ == "__main__":
    pool = multiprocessing.get_context("forkserver").Pool(3)
    pool.map(nothing, range(3))
    print("ready", flush=True)
    signal.pause()
"""


def test_a_forkserver_pools_workers_are_judged_and_its_helpers_are_not(tmp_path):
    """The pool's workers are forked by the forkserver and show its command line: they are
    workers all the same; the forkserver and the resource tracker are helpers."""
    script = tmp_path / "pool.py"
    script.write_text(FORKSERVER_POOL)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "ready\n"
        info = ProcessInfo("pool", "pool", parent.pid, "RUNNING", time.time(),
                           listed_at=boot_clock())
        sample = Sampler().sample([info], Rules.uniform("rss", "auto")).samples["pool:pool"]
        workers = [c.pid for c in psutil.Process(parent.pid).children(recursive=True)
                   if c.parent().pid != parent.pid]  # the forkserver's children
        assert sample.server is Server.POOL
        assert sorted(u.pid for u in sample.units[1:]) == sorted(workers) and len(workers) == 3
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
