"""Section 3: PSS at the cost of RSS, at realistic sizes (issue 21).

3a (bench.pssread): one read of one process, by resident size: statm, smaps_rollup, psutil.

3b: the listener's tick over pre-fork trees (bench.prefork: a master writes N MiB, then forks
children that share it, each with its own page tables), under one real supervisord per layout.
Our Daemon in process (listener.app.build, `--children each --dry-run`, listing every tick),
one instance per variant, their ticks interleaved round by round so that the machine's moods
fall on every variant alike:

- rss: `--measure rss -a 100GB` (nothing is ever over);
- pss bounded: `--measure pss -a 100GB`, Sampler() as the listener runs it: PSS read at first
  sight, then the oldest figures re-read within the time the tick's RSS pass took (none before
  30 s old, every one within 1800 s at a spread pace: listener.host.figures);
- pss full: the same with Sampler(pss_every_tick=True): every unit's PSS read every tick (what the
  listener did before);
- pss bounded, few over: layouts with a leaky tree (its children wrote 64 MiB more), the limit
  between the two sizes, so those children's PSS is read every tick (a dry run: no action);
- memmon -c (superlance), same trees, same TICK, `-a 100GB`.

The bounded variants' Figures run on a clock the bench drives: each round is TICK_5's 5 s
later, without sleeping. Each tick's wall time, CPU time (time.process_time: user and kernel,
the page-table walks included; for memmon plus its reaped `ps` children) and walks are kept.
"""

from __future__ import annotations

import gc
import io
import resource
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench import pssread
from bench.pssread import ReadRow
from bench.ticks import HIGH, InProcessMemmon
from bench.trees import LEAKY_CHILDREN, Layout, layouts, start, stop
from listener.app import build
from listener.config.parse import parse
from listener.host.figures import MIN_AGE, Figures
from listener.host.sampler import Sampler
from listener.supervisord import protocol
from tests.harness import event_text, short_dir

TICK = 5.0  # TICK_5's period, the deploy/ configuration's


@dataclass
class Ticks:
    """One variant's ticks in one layout: the bench clock's second of each, wall and CPU
    seconds, and page-table walks (-1: not counted, memmon)."""

    variant: str
    flags: str
    at: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    walks: list[int] = field(default_factory=list)

    def steady(self) -> list[int]:
        """Indices of the ticks past the youngest age re-read (the bounded variants' steady
        state); all but the first when the variant stopped before (pss full, memmon)."""
        late = [i for i, t in enumerate(self.at) if t >= MIN_AGE]
        return late or list(range(1, len(self.at))) or [0]


@dataclass
class LayoutRun:
    layout: str
    units: int  # processes whose memory is read per tick (masters and children)
    workers: int
    written_gib: float  # memory the trees wrote (what the machine held for them)
    start_seconds: float
    variants: list[Ticks]
    memmon: Ticks | None


@dataclass
class PssRun:
    reads: list[ReadRow]
    layouts: list[LayoutRun]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cpu_seconds() -> float:
    """This process's CPU time, and its reaped children's (memmon's `ps`)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class Variant:
    """Our Daemon as the CLI builds it, with its sampler's PSS refresh and clock set here."""

    def __init__(self, name: str, url: str, rules: list[str], every_tick: bool) -> None:
        self.state_dir = short_dir("mwps-")
        self.ticks = Ticks(name, " ".join(rules))
        config = parse([*rules, "--children", "each", "--dry-run", "--server-url", url,
                        "--metrics-port", "0", "--state-dir", str(self.state_dir)])
        self.parts = build(config, environ={})
        self.clock = FakeClock()
        self.sampler = Sampler(pss_every_tick=every_tick)
        self.sampler.figures = Figures(self.sampler.figures._read, every_tick, self.clock)
        self.parts.daemon.sampler = self.sampler

    def tick(self) -> None:
        event = protocol.read_event(io.StringIO(event_text()))
        assert event is not None
        gc.collect()
        wall, cpu = time.perf_counter(), cpu_seconds()
        self.parts.daemon.handle(event)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        t = self.ticks
        t.at.append(self.clock.now)
        t.wall.append(wall)
        t.cpu.append(cpu)
        t.walks.append(self.sampler.figures.walks)
        self.clock.now += TICK

    def close(self) -> None:
        errors = {k: v for k, v in self.parts.stats.snapshot().sample_errors.items() if v}
        self.parts.daemon.restarter.shutdown(1.0)
        self.parts.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if errors:
            raise RuntimeError(f"{self.ticks.variant}: sample errors: {errors}")


@dataclass(frozen=True)
class Plan:
    rounds: int  # ticks of rss and the bounded variants (the bench clock advances 5 s each)
    full_ticks: int  # ticks of pss full (each reads every unit's page tables)
    memmon_ticks: int
    reads: int  # section 3a: reads of each kind per size

    @classmethod
    def of(cls, quick: bool) -> Plan:
        # quick: one steady 60 s period after the first (t = 60..115 s); full: two
        return cls(24, 3, 3, 100) if quick else cls(36, 7, 5, 300)


def variants(layout: Layout, url: str) -> list[Variant]:
    """One Daemon per variant, the rss one first."""
    high = ["-a", HIGH]
    plan = [("rss", [*high, "--measure", "rss"], False),
            ("pss bounded", [*high, "--measure", "pss"], False),
            ("pss full", [*high, "--measure", "pss"], True)]
    if layout.leaky:
        plan.append((f"pss bounded, {LEAKY_CHILDREN} over",
                     ["-a", f"{layout.limit_mib}MB", "--measure", "pss"], False))
    made: list[Variant] = []
    try:
        for name, rules, every_tick in plan:
            made.append(Variant(name, url, rules, every_tick))
    except BaseException:
        for v in made:
            v.close()
        raise
    return made


def interleave(found: list[Variant], rounds: int, full_ticks: int) -> None:
    for i in range(rounds):
        for v in found:
            if v.ticks.variant != "pss full" or i < full_ticks:
                v.tick()


def measure_memmon(url: str, ticks: int) -> Ticks:
    memmon = InProcessMemmon(url, cumulative=True)
    found = Ticks("memmon -c", memmon.flags)
    for i in range(ticks):
        gc.collect()
        wall, cpu = time.perf_counter(), cpu_seconds()
        memmon.tick()
        found.wall.append(time.perf_counter() - wall)
        found.cpu.append(cpu_seconds() - cpu)
        found.at.append(i * TICK)
        found.walks.append(-1)
    return found


def measure_layout(layout: Layout, plan: Plan, say: Callable[[str], None],
                   memmon: bool) -> LayoutRun:
    say(f"section 3: {layout.name}: starting {layout.count()} processes under supervisord")
    sv, pids = start(layout)
    try:
        found = variants(layout, sv.url)
        try:
            say(f"section 3: {layout.name}: {plan.rounds} rounds of {len(found)} variants")
            interleave(found, plan.rounds, plan.full_ticks)
        finally:
            for v in found:
                v.close()
        mm = None
        if memmon:
            say(f"section 3: {layout.name}: memmon -c, {plan.memmon_ticks} ticks")
            mm = measure_memmon(sv.url, plan.memmon_ticks)
    finally:
        stop(sv, pids)
    return LayoutRun(layout.name, layout.count(), layout.count(workers_only=True), layout.written_gib,
                     sv.start_seconds, [v.ticks for v in found], mm)


def run(quick: bool, say: Callable[[str], None], memmon: bool = True,
        which: Sequence[Layout] | None = None) -> PssRun:
    plan = Plan.of(quick)
    # a SIGTERM (`timeout`, CI) unwinds like ^C: every tree and supervisord is stopped
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        return _run(plan, say, memmon, which or layouts(quick))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run(plan: Plan, say: Callable[[str], None], memmon: bool,
         which: Sequence[Layout]) -> PssRun:
    say(f"section 3a: one read by resident size, {plan.reads} reads of each kind")
    reads = pssread.run(plan.reads)
    return PssRun(reads, [measure_layout(layout, plan, say, memmon) for layout in which])
