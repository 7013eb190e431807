"""Section 3a: what one read of one process's memory costs, by its resident size.

Three reads side by side, interleaved round by round so that a busy moment of the machine
costs each the same: RSS from /proc/PID/statm (listener.host.procfs.ProcReader.rss, what the
listener reads for every unit every tick); one read of /proc/PID/smaps_rollup parsed here for
its Pss and Private_* lines (for comparison only: the cheapest honest PSS/USS read from
Python); psutil's memory_full_info(), which the listener uses for PSS/USS. The processes are
bench.prefork masters without children: every page of their MiB written, nothing shared.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from listener.host.procfs import ProcReader
from tests.harness import PY, ROOT, wait_for

SIZES_MIB = (20, 200, 600)
READS = {"statm": "statm (ProcReader.rss)", "rollup": "smaps_rollup, own parse",
         "psutil": "psutil memory_full_info()"}


@dataclass(frozen=True)
class ReadRow:
    mib: int  # resident MiB of the process read
    reads: int  # reads of each kind
    median_us: dict[str, float]  # READS key -> median µs per read (wall)
    cpu_us: dict[str, float]  # READS key -> median µs of CPU per read (user and kernel)
    pss_mib: float  # its PSS by our parse and by psutil, as a check that both read the same
    psutil_pss_mib: float


def rollup(pid: int) -> tuple[int, int]:
    """(PSS, USS) bytes from one read of /proc/PID/smaps_rollup: Pss, Private_Clean and
    Private_Dirty (kB); USS is the private pages, as psutil counts it."""
    fd = os.open(f"/proc/{pid}/smaps_rollup", os.O_RDONLY)
    try:
        data = os.read(fd, 8192)
    finally:
        os.close(fd)
    pss = uss = 0
    for line in data.splitlines():
        if line.startswith(b"Pss:"):
            pss = int(line.split()[1]) * 1024
        elif line.startswith(b"Private_"):  # Private_Clean, Private_Dirty, Private_Hugetlb
            uss += int(line.split()[1]) * 1024
    return pss, uss


def start_process(mib: int, children: int = 0) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([PY, "-m", "bench.prefork", str(mib), str(children)], cwd=ROOT,
                            start_new_session=True)
    try:
        wait_for(lambda: (psutil.Process(proc.pid).memory_info().rss >= mib << 20) or None,
                 60.0, what=f"{mib} MiB written")
    except BaseException:
        stop_process(proc)
        raise
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """The stand-in's whole group (its children die with it anyway)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def interleaved(fns: dict[str, Callable[[], object]],
                reads: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds of each call, `reads` rounds of one call of each; the collector
    runs between rounds, not inside a read. CPU time leaves out the moments another process
    had the core, which a busy machine adds to the wall time."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(reads):
        gc.collect()
        for key, fn in fns.items():
            began, began_cpu = time.perf_counter(), time.process_time()
            fn()
            times[key].append(time.perf_counter() - began)
            cpu[key].append(time.process_time() - began_cpu)
    return times, cpu


def measure_one(mib: int, reads: int) -> ReadRow:
    proc = start_process(mib)
    try:
        pid, reader = proc.pid, ProcReader()
        target = psutil.Process(pid)
        times, cpu = interleaved({"statm": lambda: reader.rss(pid), "rollup": lambda: rollup(pid),
                             "psutil": target.memory_full_info}, reads)
        pss, psutil_pss = rollup(pid)[0], target.memory_full_info().pss
    finally:
        stop_process(proc)
    return ReadRow(mib, reads, {k: statistics.median(v) * 1e6 for k, v in times.items()},
                   {k: statistics.median(v) * 1e6 for k, v in cpu.items()}, pss / 2**20, psutil_pss / 2**20)


def run(reads: int, sizes: Sequence[int] = SIZES_MIB) -> list[ReadRow]:
    return [measure_one(mib, reads) for mib in sizes]


def rows(found: Sequence[ReadRow]) -> list[list[str]]:
    """Wall µs (CPU µs) per read."""
    return ([["resident", "reads", *READS.values(), "psutil / own parse"]]
            + [[f"{r.mib} MiB", str(r.reads),
                *(f"{r.median_us[k]:.0f} ({r.cpu_us[k]:.0f})" for k in READS),
                f"{r.median_us['psutil'] / r.median_us['rollup']:.2f} "
                f"({r.cpu_us['psutil'] / r.cpu_us['rollup']:.2f})"] for r in found])
