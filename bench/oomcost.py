"""Section 8: what watching for OOM kills costs a tick when nothing happens.

Measured in-process on this machine's real /dev/kmsg and /proc/vmstat (as root): the listener's
OomWatch.tick() with no kill to read, for N supervised processes of 5 pids each, with and
without a rule's oom-score-adj (whose writes are done once per process start, so a quiet tick
only looks its pids up), and the two sources alone: a non-blocking read of /dev/kmsg at its
end (EAGAIN) and a read of /proc/vmstat (the fallback without CAP_SYSLOG). With strace
installed, the system calls of 1000 quiet ticks are counted too.

`python -m bench.oomcost` runs it alone; `python -m bench --sections 8` with the rest."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from listener.core.model import ProcessInfo, Sample, Unit
from listener.core.rules import Rules, Strategy
from listener.host.oom import KernelKills, _read_vmstat
from listener.host.oomwatch import OomWatch, ScoreAdjuster
from listener.web.stats import Stats

BOOT = 1_000_000.0


def _fleet(n: int) -> tuple[list[ProcessInfo], dict[str, Sample]]:
    """N supervised processes of a master and 4 workers each, as one tick's samples; pids far
    above the kernel's so that no write reaches a real process."""
    processes, samples = [], {}
    for i in range(n):
        base = 10_000_000 + i * 10
        proc = ProcessInfo("web", f"web_{i:04d}", base, "RUNNING", BOOT + 1)
        members = tuple(Unit(base + k, 50 << 20, BOOT + 1) for k in range(5))
        processes.append(proc)
        samples[proc.namespec] = Sample(50 << 20, "pss", 4, members, members=members)
    return processes, samples


def _per_call(fn: Callable[[], object], calls: int) -> float:
    """Median over 5 runs of the seconds per call."""
    runs = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - began) / calls)
    return statistics.median(runs)


def _syscalls(ticks: int) -> str:
    if shutil.which("strace") is None:
        return "strace not installed: system calls not counted"
    code = f"from bench.oomcost import _quiet_ticks; _quiet_ticks({ticks})"
    out = subprocess.run(["strace", "-f", "-c", "-e", "trace=read,openat,lseek", sys.executable,
                          "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    lines = [line for line in out.stderr.splitlines() if line.strip().endswith(("read", "openat",
                                                                                "lseek"))]
    return f"strace -c of {ticks} quiet ticks (and the interpreter's start): " + "; ".join(
        " ".join(line.split()[3:]) for line in lines)


def _quiet_ticks(ticks: int) -> None:
    processes, samples = _fleet(10)
    watch = OomWatch(Stats())
    rules = Rules()
    for _ in range(ticks):
        watch.tick(processes, samples, rules)


def run(n: int = 1000, calls: int = 2000) -> list[str]:
    processes, samples = _fleet(n)
    lines = []
    watch = OomWatch(Stats())
    quiet = Rules(programs=(("web:*", 1 << 30),))
    adjusted = Rules(programs=(("web:*", 1 << 30, Strategy(oom_score_adj=500)),))
    tick = _per_call(lambda: watch.tick(processes, samples, quiet), calls)
    lines.append(f"OomWatch.tick, {n} processes x 5 pids, no kill, no oom-score-adj: "
                 f"{tick * 1e6:.1f} us (source: {watch.kernel.source})")
    watch.tick(processes, samples, adjusted)  # the writes of a first tick (pids not real)
    tick = _per_call(lambda: watch.tick(processes, samples, adjusted), max(1, calls // 10))
    lines.append(f"OomWatch.tick, {n} processes x 5 pids, no kill, oom-score-adj on every "
                 f"process (done already): {tick * 1e6:.1f} us")
    watch.close()
    kernel = KernelKills(boot_time=BOOT)
    kernel.open()
    if kernel.source == "kmsg":
        poll = _per_call(lambda: kernel.poll(processes, samples), calls * 5)
        lines.append(f"/dev/kmsg at its end, one read (EAGAIN): {poll * 1e6:.2f} us a tick")
    kernel.close()
    vmstat = _per_call(lambda: _read_vmstat("/proc/vmstat"), calls)
    lines.append(f"/proc/vmstat read and parsed (the fallback): {vmstat * 1e6:.1f} us a tick")
    nothing = _per_call(lambda: ScoreAdjuster().adjust(processes, samples, quiet), calls)
    lines.append(f"oom-score-adj with no rule setting it: {nothing * 1e6:.2f} us a tick")
    lines.append(_syscalls(1000))
    return lines


if __name__ == "__main__":
    for line in run():
        print(line)
