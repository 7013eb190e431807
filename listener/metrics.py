"""Prometheus exposition of the daemon's Stats: a collector on a private registry, encoded by
prometheus_client itself (listener.httpserver serves it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from listener import __version__
from listener.stats import TICK_BUCKETS, Counter, Stats

LABELS = ["group", "process"]

MEMORY = ("memwatch_process_memory_bytes",
          "Memory figure the limit is compared with (see --children).")
LIMIT = ("memwatch_process_memory_limit_bytes", "Memory limit that applies to the process.")
OVER = ("memwatch_process_over_limit_samples", "Consecutive samples over the limit.")
CHILDREN = ("memwatch_process_children", "Descendants of the process (with --children sum/each).")
COUNTER_HELP = {
    Counter.RESTARTS: "Restarts of the process for memory (stop done).",
    Counter.RESTART_FAILURES:
        "Restarts that failed: stop or start faulted, or supervisord was unreachable.",
    Counter.RESTARTS_SUPPRESSED:
        "Actions withheld because the process used up its --max-restarts budget.",
    Counter.CHILD_SIGNALS: "Signals sent to an over-limit child process.",
    Counter.DRY_RUN_ACTIONS: "Actions decided but not taken (--dry-run).",
}
EVENTS = ("memwatch_events", "Events received from supervisord.")
SAMPLE_ERRORS = ("memwatch_sample_errors", "Samples that could not be taken, by reason.")
TICK_DURATION = ("memwatch_tick_duration_seconds",
                 "Time to handle a TICK: list, sample, decide, dispatch.")
LAST_TICK = ("memwatch_last_tick_timestamp_seconds", "Unix time of the last handled TICK.")
SUPERVISOR_UP = ("memwatch_supervisor_up", "1 if the last call to supervisord succeeded.")
STOPPED = ("memwatch_stopped_not_running",
           "Processes this listener stopped that are not running again yet.")
BUILD = ("memwatch_build_info", "Version of sentry-memwatch.")
BUCKET_BOUNDS = [str(bound) for bound in TICK_BUCKETS] + ["+Inf"]


def make_registry(stats: Stats) -> CollectorRegistry:
    """A private registry (never the global one) holding the daemon's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MemwatchCollector(stats))
    return registry


class MemwatchCollector(Collector):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        memory = GaugeMetricFamily(*MEMORY, labels=[*LABELS, "measure"])
        limit = GaugeMetricFamily(*LIMIT, labels=LABELS)
        over = GaugeMetricFamily(*OVER, labels=LABELS)
        children = GaugeMetricFamily(*CHILDREN, labels=LABELS)
        counters = {c: CounterMetricFamily(f"memwatch_{c.value}", doc, labels=LABELS)
                    for c, doc in COUNTER_HELP.items()}
        for p in snap.processes:
            labels = [p.group, p.process]
            if p.memory is not None:
                memory.add_metric([*labels, p.measure], p.memory)
            if p.limit is not None:
                limit.add_metric(labels, p.limit)
            over.add_metric(labels, p.over_samples)
            if p.children is not None:
                children.add_metric(labels, p.children)
            for c, family in counters.items():
                family.add_metric(labels, getattr(p, c.value))
        yield from (memory, limit, over, children, *counters.values())

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
        build = GaugeMetricFamily(*BUILD, labels=["version"])
        build.add_metric([__version__], 1)
        yield build
