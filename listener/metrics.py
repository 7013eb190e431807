"""Prometheus exposition of the daemon's Stats, on a private registry and its own thread."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from listener import __version__
from listener.stats import TICK_BUCKETS, Stats

LABELS = ["group", "process"]

_PROCESS_COUNTERS = (
    ("restarts", "memwatch_restarts", "Restarts of the process for memory (stop done)."),
    ("restart_failures", "memwatch_restart_failures",
     "Restarts that failed: stop or start faulted, or supervisord was unreachable."),
    ("restarts_suppressed", "memwatch_restarts_suppressed",
     "Actions withheld because the process used up its --max-restarts budget."),
    ("child_signals", "memwatch_child_signals", "Signals sent to an over-limit child process."),
    ("dry_run_actions", "memwatch_dry_run_actions", "Actions decided but not taken (--dry-run)."),
)


class MemwatchCollector(Collector):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        memory = GaugeMetricFamily("memwatch_process_memory_bytes",
                                   "Memory figure the limit is compared with (see --children).",
                                   labels=[*LABELS, "measure"])
        limit = GaugeMetricFamily("memwatch_process_memory_limit_bytes",
                                  "Memory limit that applies to the process.", labels=LABELS)
        over = GaugeMetricFamily("memwatch_process_over_limit_samples",
                                 "Consecutive samples over the limit.", labels=LABELS)
        children = GaugeMetricFamily("memwatch_process_children",
                                     "Descendants of the process (with --children sum/each).",
                                     labels=LABELS)
        counters = [CounterMetricFamily(name, doc, labels=LABELS)
                    for _, name, doc in _PROCESS_COUNTERS]
        for p in snap.processes:
            labels = [p.group, p.process]
            if p.memory is not None:
                memory.add_metric([*labels, p.measure], p.memory)
            if p.limit is not None:
                limit.add_metric(labels, p.limit)
            over.add_metric(labels, p.over_samples)
            if p.children is not None:
                children.add_metric(labels, p.children)
            for family, (attr, _, _) in zip(counters, _PROCESS_COUNTERS):
                family.add_metric(labels, getattr(p, attr))
        yield from (memory, limit, over, children, *counters)

        events = CounterMetricFamily("memwatch_events", "Events received from supervisord.",
                                     labels=["event"])
        for name, n in sorted(snap.events.items()):
            events.add_metric([name], n)
        yield events
        errors = CounterMetricFamily("memwatch_sample_errors",
                                     "Samples that could not be taken, by reason.", labels=["reason"])
        for reason, n in sorted(snap.sample_errors.items()):
            errors.add_metric([reason], n)
        yield errors
        buckets: list[tuple[str, Any]] = [
            (str(bound), n) for bound, n in zip(TICK_BUCKETS, snap.tick_buckets)]
        buckets.append(("+Inf", snap.tick_buckets[-1]))
        yield HistogramMetricFamily("memwatch_tick_duration_seconds",
                                    "Time to handle a TICK: list, sample, decide, dispatch.",
                                    buckets=buckets, sum_value=snap.tick_sum)
        yield GaugeMetricFamily("memwatch_last_tick_timestamp_seconds",
                                "Unix time of the last handled TICK.", value=snap.last_tick)
        yield GaugeMetricFamily("memwatch_supervisor_up",
                                "1 if the last call to supervisord succeeded.",
                                value=snap.supervisor_up)
        yield GaugeMetricFamily("memwatch_stopped_not_running",
                                "Processes this listener stopped that are not running again yet.",
                                value=snap.stopped_not_running)
        build = GaugeMetricFamily("memwatch_build_info", "Version of sentry-memwatch.",
                                  labels=["version"])
        build.add_metric([__version__], 1)
        yield build


def make_registry(stats: Stats) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MemwatchCollector(stats))
    return registry


class MetricsServer:
    """The /metrics endpoint. Raises OSError if the address cannot be bound."""

    def __init__(self, registry: CollectorRegistry, addr: str, port: int,
                 certfile: str | None = None, keyfile: str | None = None,
                 client_cafile: str | None = None) -> None:
        self._server, self._thread = start_http_server(
            port, addr=addr, registry=registry, certfile=certfile, keyfile=keyfile,
            client_cafile=client_cafile, client_auth_required=client_cafile is not None)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
