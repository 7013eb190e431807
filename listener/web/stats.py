"""The daemon's own record of what it saw and did; metrics are rendered from it.

Written by the event loop and the restart threads, read by the metrics thread: every
access goes through one lock, and readers get copies.
"""

from __future__ import annotations

import enum
import threading
import time
from array import array
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from listener.core.model import SAMPLE_ERRORS
from listener.core.rows import ProcessRow

TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Counter(str, enum.Enum):
    """The per-process counters; the value is the ProcessRow field and the metric's stem."""

    RESTARTS = "restarts"
    RESTART_FAILURES = "restart_failures"
    RESTARTS_SUPPRESSED = "restarts_suppressed"
    CHILD_SIGNALS = "child_signals"
    CHILD_SIGNAL_ESCALATIONS = "child_signal_escalations"
    DRY_RUN_ACTIONS = "dry_run_actions"
    OOM_KILLS = "oom_kills"  # not the listener's action, the kernel's: shown as the last one
    FORCED_STOPS = "forced_stops"


@dataclass(frozen=True)
class Snapshot:
    processes: tuple[ProcessRow, ...]
    events: dict[str, int]
    sample_errors: dict[str, int]
    supervisor_up: int
    last_tick: float
    tick_buckets: tuple[int, ...]  # cumulative counts per TICK_BUCKETS bound, then +Inf
    tick_sum: float
    stopped_not_running: int
    host_oom_kills: int = 0  # OOM kills of processes not watched, or not attributed
    oom_source: str = "none"  # where OOM kills are seen: kmsg, vmstat or none
    tick_problem: str = ""  # no TICK arrives: why, in one line (listener.supervisord.ticks)
    supervisor_url: str = ""  # where the listener asks supervisord, without credentials
    supervisor_error: str = ""  # why the last ask failed, in one line; "": it did not


# what a process's row keeps from tick to tick: its counters and its last action (looked up
# once, not per process and tick)
KEPT_FIELDS = (*(c.value for c in Counter), "last_action", "last_action_at")
HISTORY = 120  # samples kept per process for the status page: 10 minutes of TICK_5
# kept as flat arrays of doubles (time, bytes, time, bytes...): 16 bytes a sample, ~2 MB for
# 1000 processes, where tuples would take ~13 MB
PACE_ROWS = 20  # rows of the status page built between two looks at the event loop (~1 ms)
ACTIONS = frozenset({Counter.RESTARTS, Counter.CHILD_SIGNALS, Counter.CHILD_SIGNAL_ESCALATIONS,
                     Counter.DRY_RUN_ACTIONS, Counter.OOM_KILLS})


class Stats:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # wall time of the actions counted (the status page shows them)
        self._lock = threading.Lock()
        self._processes: dict[str, ProcessRow] = {}
        # born at 0, so that increase() sees the first one (Prometheus cannot see a counter
        # that starts life at 1)
        self._events: Tally[str] = Tally({"malformed": 0})
        self._sample_errors: Tally[str] = Tally({r: 0 for r in SAMPLE_ERRORS})
        self._supervisor_up = 0
        self._last_tick = 0.0
        self._bucket_counts = [0] * (len(TICK_BUCKETS) + 1)
        self._tick_sum = 0.0
        self._stopped_not_running = 0
        self._host_oom_kills = 0
        self._oom_source = "none"
        self._tick_problem = ""
        self._supervisor_url = ""
        self._supervisor_error = ""
        self._history: dict[str, array[float]] = {}
        self._changes = 0  # bumped by whatever the status page shows (not by events)
        self._loop_idle = threading.Event()
        self._loop_idle.set()

    def loop_busy(self, busy: bool) -> None:
        """The event loop is handling an event (True) or waiting for one (False)."""
        if busy:
            self._loop_idle.clear()
        else:
            self._loop_idle.set()

    def wait_loop_idle(self, patience: float) -> None:
        """For the scrape thread: give way to the event loop (at most `patience` seconds), so
        that encoding /metrics never competes with an event's answer for the interpreter."""
        if patience > 0:
            self._loop_idle.wait(patience)

    def event(self, name: str) -> None:
        with self._lock:
            self._events[name] += 1

    def sample_errors(self, errors: Mapping[str, int]) -> None:
        with self._lock:
            self._sample_errors.update(errors)

    def supervisor_up(self, up: bool, error: str = "", url: str = "") -> None:
        """supervisord answered (up) or not, and why not; `url` is where it was asked
        (credentials left out: the status page shows it)."""
        error = "" if up else error
        with self._lock:
            said = (int(up), error, url)
            self._changes += said != (self._supervisor_up, self._supervisor_error,
                                      self._supervisor_url)
            self._supervisor_up, self._supervisor_error, self._supervisor_url = said

    def tick_problem(self, problem: str) -> None:
        with self._lock:
            self._changes += self._tick_problem != problem  # /status is rendered again
            self._tick_problem = problem

    def stopped_not_running(self, n: int) -> None:
        with self._lock:
            self._changes += self._stopped_not_running != n
            self._stopped_not_running = n

    def host_oom_kills(self, n: int) -> None:
        with self._lock:
            self._changes += bool(n)
            self._host_oom_kills += n

    def oom_source(self, source: str) -> None:
        with self._lock:
            self._changes += self._oom_source != source
            self._oom_source = source

    def observe(self, rows: Iterable[ProcessRow], now: float) -> None:
        """Record a tick's figures, before any action is counted. Processes not in `rows` lose
        their series; new ones start with every counter at 0, so that increase() sees their
        first restart; the others keep theirs (a tick's rows carry none)."""
        with self._lock:
            current: dict[str, ProcessRow] = {}
            for row in rows:
                namespec = row.namespec
                old = self._processes.get(namespec)
                if old:
                    row = replace(row, **{f: getattr(old, f) for f in KEPT_FIELDS})
                    if old.pid == row.pid and old.cpu_seconds is not None and (
                            row.cpu_seconds is None or row.cpu_seconds < old.cpu_seconds):
                        # a counter: an orphaned child's time leaves the tree, a missed sample
                        # leaves a gap; neither may look like a reset to Prometheus
                        row = replace(row, cpu_seconds=old.cpu_seconds)
                current[namespec] = row
                samples = self._history.setdefault(namespec, array("d"))
                if row.memory_bytes is not None:
                    samples.extend((now, row.memory_bytes))
                    del samples[:-2 * HISTORY]
            for gone in self._history.keys() - current.keys():
                del self._history[gone]
            self._processes = current
            self._changes += 1

    def tick_done(self, finished: float, duration: float) -> None:
        with self._lock:
            self._last_tick = finished
            self._changes += 1
            self._bucket_counts[bisect_left(TICK_BUCKETS, duration)] += 1
            self._tick_sum += duration

    def count(self, namespec: str, counter: Counter, n: int = 1) -> bool:
        """Add to a per-process counter; a process that is gone has no series left to add to
        (False)."""
        counter = Counter(counter)
        field = counter.value
        with self._lock:
            old = self._processes.get(namespec)
            if old is None:
                return False
            new = replace(old, **{field: getattr(old, field) + n})
            if counter in ACTIONS:
                new = replace(new, last_action=field, last_action_at=self._clock())
            self._processes[namespec] = new
            self._changes += 1
        return True

    def changes(self) -> int:
        """A number that moves whenever what the status page shows may have changed."""
        with self._lock:
            return self._changes

    def snapshot(self, history: bool = False, pace: Callable[[], object] = lambda: None) -> Snapshot:
        """A copy of everything; with history=True (the status page) the recent samples too,
        copied under the lock as raw arrays and turned into pairs outside it, calling `pace`
        every PACE_ROWS processes (to give way to the event loop)."""
        with self._lock:
            cumulative, running = [], 0
            for n in self._bucket_counts:
                running += n
                cumulative.append(running)
            processes = tuple(self._processes.values())
            flats = {ns: array("d", a) for ns, a in self._history.items()} if history else {}
            snap = Snapshot(
                processes=processes,
                events=dict(self._events),
                sample_errors=dict(self._sample_errors),
                supervisor_up=self._supervisor_up,
                last_tick=self._last_tick,
                tick_buckets=tuple(cumulative),
                tick_sum=self._tick_sum,
                stopped_not_running=self._stopped_not_running,
                host_oom_kills=self._host_oom_kills,
                oom_source=self._oom_source,
                tick_problem=self._tick_problem,
                supervisor_url=self._supervisor_url,
                supervisor_error=self._supervisor_error,
            )
        if not history:
            return snap
        with_history = []
        for i, p in enumerate(processes):
            if i % PACE_ROWS == 0:
                pace()
            flat = flats.get(p.namespec, array("d"))
            pairs = tuple(zip(flat[0::2], map(int, flat[1::2]), strict=True))
            with_history.append(replace(p, history=pairs))
        return replace(snap, processes=tuple(with_history))
