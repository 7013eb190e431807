"""The daemon's own record of what it saw and did; metrics are rendered from it.

Written by the event loop and the actuator's threads, read by the metrics thread: every
access goes through one lock, and readers get copies.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from listener.policy import SELF, Judgement

TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SAMPLE_ERROR_REASONS = ("vanished", "zombie", "access_denied", "pss_denied", "uss_denied")
COUNTERS = ("restarts", "restart_failures", "restarts_suppressed", "child_signals", "dry_run_actions")


@dataclass(frozen=True)
class ProcessStats:
    group: str
    process: str
    memory: int | None = None
    measure: str = "rss"
    limit: int | None = None
    over_samples: int = 0
    children: int | None = None
    restarts: int = 0
    restart_failures: int = 0
    restarts_suppressed: int = 0
    child_signals: int = 0
    dry_run_actions: int = 0


@dataclass(frozen=True)
class Snapshot:
    processes: tuple[ProcessStats, ...]
    events: dict[str, int]
    sample_errors: dict[str, int]
    supervisor_up: int
    last_tick: float
    tick_buckets: tuple[int, ...]  # cumulative counts per TICK_BUCKETS bound, then +Inf
    tick_sum: float
    stopped_not_running: int


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: dict[str, ProcessStats] = {}
        # born at 0, so that increase() sees the first one (Prometheus cannot see a counter
        # that starts life at 1)
        self._events: Counter[str] = Counter({"malformed": 0})
        self._sample_errors: Counter[str] = Counter({r: 0 for r in SAMPLE_ERROR_REASONS})
        self._supervisor_up = 0
        self._last_tick = 0.0
        self._bucket_counts = [0] * (len(TICK_BUCKETS) + 1)
        self._tick_sum = 0.0
        self._stopped_not_running = 0

    def event(self, name: str) -> None:
        with self._lock:
            self._events[name] += 1

    def sample_errors(self, errors: Counter[str]) -> None:
        with self._lock:
            self._sample_errors.update(errors)

    def supervisor_up(self, up: bool) -> None:
        with self._lock:
            self._supervisor_up = int(up)

    def stopped_not_running(self, n: int) -> None:
        with self._lock:
            self._stopped_not_running = n

    def observe(self, judgements: Iterable[Judgement]) -> None:
        """Record a tick's figures, before any action is counted. Processes no longer listed
        lose their series; new ones start with every counter at 0, so that increase() sees
        their first restart."""
        with self._lock:
            current: dict[str, ProcessStats] = {}
            for j in judgements:
                # only watched processes have series: a process with no limit (or the listener
                # itself) belongs to another listener's dashboards, if any
                if j.verdict == SELF or j.limit is None:
                    continue
                namespec = j.process.namespec
                old = self._processes.get(namespec) or ProcessStats(j.process.group, j.process.name)
                current[namespec] = replace(
                    old,
                    memory=j.sample.value if j.sample else None,
                    measure=j.sample.measure if j.sample else old.measure,
                    limit=j.limit,
                    over_samples=j.over_samples,
                    children=j.sample.children if j.sample else None,
                )
            self._processes = current

    def tick_done(self, finished: float, duration: float) -> None:
        with self._lock:
            self._last_tick = finished
            self._bucket_counts[bisect_left(TICK_BUCKETS, duration)] += 1
            self._tick_sum += duration

    def count(self, namespec: str, counter: str, n: int = 1) -> None:
        """Add to a per-process counter; a process that is gone has no series left to add to."""
        assert counter in COUNTERS, counter
        with self._lock:
            old = self._processes.get(namespec)
            if old is not None:
                self._processes[namespec] = replace(old, **{counter: getattr(old, counter) + n})

    def get(self, namespec: str) -> ProcessStats | None:
        with self._lock:
            return self._processes.get(namespec)

    def snapshot(self) -> Snapshot:
        with self._lock:
            cumulative, running = [], 0
            for n in self._bucket_counts:
                running += n
                cumulative.append(running)
            return Snapshot(
                processes=tuple(self._processes.values()),
                events=dict(self._events),
                sample_errors=dict(self._sample_errors),
                supervisor_up=self._supervisor_up,
                last_tick=self._last_tick,
                tick_buckets=tuple(cumulative),
                tick_sum=self._tick_sum,
                stopped_not_running=self._stopped_not_running,
            )
