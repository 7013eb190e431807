"""Prometheus exposition of the daemon's Stats: a collector on a private registry, encoded by
prometheus_client itself (listener.web.httpserver serves it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from operator import attrgetter
from typing import Any, cast

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from listener import __version__
from listener.core.rows import ProcessRow
from listener.web.stats import TICK_BUCKETS, Counter, Snapshot, Stats

LABELS = ["group", "process"]

MEMORY = ("memwatch_process_memory_bytes",
          "Memory figure the limit is compared with (see --children).")
LIMIT = ("memwatch_process_memory_limit_bytes", "Memory limit that applies to the process.")
OVER = ("memwatch_process_over_limit_samples", "Consecutive samples over the limit.")
CHILDREN = ("memwatch_process_children", "Descendants of the process (with --children sum/each).")
TREE_MEMORY = ("memwatch_process_tree_memory_bytes",
               "Memory of the supervised process and all its descendants, summed (with --children "
               "none: the process alone).")
CPU = ("memwatch_process_cpu_seconds",
       "CPU time of the process and its descendants, exited ones included (with --children "
       "none: the process and the children it has waited for).")
MEMORY_PID = ("memwatch_process_memory_pid",
              "Pid whose memory memwatch_process_memory_bytes is: the largest worker with "
              "--children each/auto, else the supervised process (none for a tree's sum).")
COUNTER_HELP = {
    Counter.RESTARTS: "Restarts of the process for memory (stop done).",
    Counter.RESTART_FAILURES:
        "Restarts that failed: stop or start faulted, or supervisord was unreachable.",
    Counter.RESTARTS_SUPPRESSED:
        "Actions withheld because the process used up its --max-restarts budget.",
    Counter.CHILD_SIGNALS: "Signals sent to an over-limit child process.",
    Counter.CHILD_SIGNAL_ESCALATIONS:
        "Program restarts because a signalled child outlived --child-signal-timeout.",
    Counter.DRY_RUN_ACTIONS: "Actions decided but not taken (--dry-run).",
    Counter.OOM_KILLS: "The process or a worker of its tree killed by the kernel's OOM killer.",
    Counter.FORCED_STOPS:
        "Restarts whose stop supervisord forced with SIGKILL after stopwaitsecs.",
}
EVENTS = ("memwatch_events", "Events received from supervisord.")
SAMPLE_ERRORS = ("memwatch_sample_errors", "Samples that could not be taken, by reason.")
TICK_DURATION = ("memwatch_tick_duration_seconds",
                 "Time to handle a TICK: list, sample, decide, dispatch.")
LAST_TICK = ("memwatch_last_tick_timestamp_seconds", "Unix time of the last handled TICK.")
SUPERVISOR_UP = ("memwatch_supervisor_up", "1 if the last call to supervisord succeeded.")
STOPPED = ("memwatch_stopped_not_running",
           "Processes this listener stopped that are not running again yet.")
HOST_OOM_KILLS = ("memwatch_host_oom_kills",
                  "OOM kills of processes this listener does not watch (Postgres, Redis...), or "
                  "could not attribute (no kernel log access: every kill).")
BUILD = ("memwatch_build_info", "Version of sentry-memwatch.")
PATIENCE = 1.0
BUCKET_BOUNDS = [str(bound) for bound in TICK_BUCKETS] + ["+Inf"]


def make_registry(stats: Stats, patience: float = PATIENCE) -> CollectorRegistry:
    """A private registry (never the global one) holding the daemon's collector, and the
    listener's own memory, CPU and descriptors (process_*, read from /proc/self at each
    scrape): a watchdog that leaks must show it like the processes it watches."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MemwatchCollector(stats, patience))
    ProcessCollector(registry=registry)
    return registry


class MemwatchCollector(Collector):
    def __init__(self, stats: Stats, patience: float = PATIENCE) -> None:
        self.stats = stats
        self.patience = patience  # seconds a scrape may wait for the event loop, in all

    def collect(self) -> Iterator[Metric]:
        # prometheus_client encodes each family as it is yielded (a few ms for a family of
        # 1000 processes): before building each, the scrape gives way while the loop handles an
        # event, up to `patience` in all (a tick stuck on a hung supervisord must not cost the
        # scrape that reports it)
        deadline = time.monotonic() + self.patience
        self.stats.wait_loop_idle(self.patience)
        snap = self.stats.snapshot()
        for spec in PER_PROCESS:
            self.stats.wait_loop_idle(deadline - time.monotonic())
            yield _process_family(snap, *spec)
        self.stats.wait_loop_idle(deadline - time.monotonic())
        yield from _listener_families(snap)


PER_PROCESS: list[tuple[Callable[..., Metric], str, str, Callable[[ProcessRow], float | None]]] = [
    (GaugeMetricFamily, *MEMORY, attrgetter("memory_bytes")),
    (GaugeMetricFamily, *LIMIT, attrgetter("limit_bytes")),
    (GaugeMetricFamily, *OVER, attrgetter("over_limit_samples")),
    (GaugeMetricFamily, *CHILDREN, attrgetter("children")),
    (GaugeMetricFamily, *MEMORY_PID, attrgetter("memory_pid")),
    (GaugeMetricFamily, *TREE_MEMORY, attrgetter("tree_memory_bytes")),
    (CounterMetricFamily, *CPU, attrgetter("cpu_seconds")),
    *((CounterMetricFamily, f"memwatch_{c.value}", doc, attrgetter(c.value))
      for c, doc in COUNTER_HELP.items()),
]


def _process_family(snap: Snapshot, kind: Callable[..., Metric], name: str, doc: str,
                    value: Callable[[ProcessRow], float | None]) -> Metric:
    """One family with a sample per process that has a value; memory also says its measure."""
    with_measure = name in (MEMORY[0], TREE_MEMORY[0])
    family: Any = kind(name, doc, labels=[*LABELS, "measure"] if with_measure else LABELS)
    for p in snap.processes:
        v = value(p)
        if v is not None:
            family.add_metric([p.group, p.process, p.measure] if with_measure
                              else [p.group, p.process], v)
    return cast(Metric, family)


def _listener_families(snap: Snapshot) -> Iterator[Metric]:
    events = CounterMetricFamily(*EVENTS, labels=["event"])
    for name, n in sorted(snap.events.items()):
        events.add_metric([name], n)
    yield events
    errors = CounterMetricFamily(*SAMPLE_ERRORS, labels=["reason"])
    for reason, n in sorted(snap.sample_errors.items()):
        errors.add_metric([reason], n)
    yield errors
    buckets: list[tuple[str, Any]] = list(zip(BUCKET_BOUNDS, snap.tick_buckets, strict=False))
    yield HistogramMetricFamily(*TICK_DURATION, buckets=buckets, sum_value=snap.tick_sum)
    yield GaugeMetricFamily(*LAST_TICK, value=snap.last_tick)
    yield GaugeMetricFamily(*SUPERVISOR_UP, value=snap.supervisor_up)
    yield GaugeMetricFamily(*STOPPED, value=snap.stopped_not_running)
    yield CounterMetricFamily(*HOST_OOM_KILLS, value=snap.host_oom_kills)
    build = GaugeMetricFamily(*BUILD, labels=["version"])
    build.add_metric([__version__], 1)
    yield build
