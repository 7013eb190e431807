"""Prometheus exposition of the daemon's Stats, on a private registry and its own thread.

/metrics is rendered straight from a Stats snapshot (`render`), byte for byte what
prometheus_client's encoders make of MemwatchCollector (tests hold them equal), at a fraction of
the cost: prometheus_client formats every sample's labels anew, ~8 µs a series, 70 ms at 1000
processes. Requests the fast path does not know (other formats or name escapings, `name[]`
filters, other collectors) are served by prometheus_client itself.
"""

from __future__ import annotations

import functools
import gzip
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast
from urllib.parse import parse_qs

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client import exposition as text_format
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics import exposition as openmetrics_format
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from listener import __version__
from listener.stats import TICK_BUCKETS, ProcessStats, Snapshot, Stats

LABELS = ["group", "process"]

MEMORY = ("memwatch_process_memory_bytes",
          "Memory figure the limit is compared with (see --children).")
LIMIT = ("memwatch_process_memory_limit_bytes", "Memory limit that applies to the process.")
OVER = ("memwatch_process_over_limit_samples", "Consecutive samples over the limit.")
CHILDREN = ("memwatch_process_children", "Descendants of the process (with --children sum/each).")
_PROCESS_COUNTERS = (
    ("restarts", "memwatch_restarts", "Restarts of the process for memory (stop done)."),
    ("restart_failures", "memwatch_restart_failures",
     "Restarts that failed: stop or start faulted, or supervisord was unreachable."),
    ("restarts_suppressed", "memwatch_restarts_suppressed",
     "Actions withheld because the process used up its --max-restarts budget."),
    ("child_signals", "memwatch_child_signals", "Signals sent to an over-limit child process."),
    ("dry_run_actions", "memwatch_dry_run_actions", "Actions decided but not taken (--dry-run)."),
)
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


class MemwatchCollector(Collector):
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats.snapshot()
        memory = GaugeMetricFamily(*MEMORY, labels=[*LABELS, "measure"])
        limit = GaugeMetricFamily(*LIMIT, labels=LABELS)
        over = GaugeMetricFamily(*OVER, labels=LABELS)
        children = GaugeMetricFamily(*CHILDREN, labels=LABELS)
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

        events = CounterMetricFamily(*EVENTS, labels=["event"])
        for name, n in sorted(snap.events.items()):
            events.add_metric([name], n)
        yield events
        errors = CounterMetricFamily(*SAMPLE_ERRORS, labels=["reason"])
        for reason, n in sorted(snap.sample_errors.items()):
            errors.add_metric([reason], n)
        yield errors
        buckets: list[tuple[str, Any]] = list(zip(BUCKET_BOUNDS, snap.tick_buckets))
        yield HistogramMetricFamily(*TICK_DURATION, buckets=buckets, sum_value=snap.tick_sum)
        yield GaugeMetricFamily(*LAST_TICK, value=snap.last_tick)
        yield GaugeMetricFamily(*SUPERVISOR_UP, value=snap.supervisor_up)
        yield GaugeMetricFamily(*STOPPED, value=snap.stopped_not_running)
        build = GaugeMetricFamily(*BUILD, labels=["version"])
        build.add_metric([__version__], 1)
        yield build


# --- the fast path: the exposition text straight from a snapshot ---

_go = cast(Callable[[float], str], floatToGoString)  # how both formats write a value
_SMALL = [_go(i) for i in range(1024)]  # counts: most values, formatted once


def _value(v: float) -> str:
    if type(v) is int and 0 <= v < 1024:
        return _SMALL[v]
    return _go(v)


def _label(value: str) -> str:
    """A label value as both formats escape it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _header(name: str, doc: str, kind: str, openmetrics: bool) -> str:
    if openmetrics:  # the family name, without _total; HELP escapes quotes too
        return f"# HELP {name} {_label(doc)}\n# TYPE {name} {kind}\n"
    shown = f"{name}_total" if kind == "counter" else name
    doc = doc.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {shown} {doc}\n# TYPE {shown} {kind}\n"


def render(snap: Snapshot, openmetrics: bool = False) -> bytes:
    """The exposition text of MemwatchCollector for this snapshot: Prometheus text format
    (0.0.4 / 1.0.0 with legacy names), or OpenMetrics 1.0.0."""
    out: list[str] = []
    add = out.append
    procs: list[tuple[ProcessStats, str, str]] = [
        (p, f'group="{_label(p.group)}"', f'process="{_label(p.process)}"') for p in snap.processes]

    name = MEMORY[0]
    add(_header(*MEMORY, "gauge", openmetrics))
    for p, g, pr in procs:
        if p.memory is not None:
            add(f'{name}{{{g},measure="{_label(p.measure)}",{pr}}} {_value(p.memory)}\n')
    name = LIMIT[0]
    add(_header(*LIMIT, "gauge", openmetrics))
    for p, g, pr in procs:
        if p.limit is not None:
            add(f"{name}{{{g},{pr}}} {_value(p.limit)}\n")
    name = OVER[0]
    add(_header(*OVER, "gauge", openmetrics))
    for p, g, pr in procs:
        add(f"{name}{{{g},{pr}}} {_value(p.over_samples)}\n")
    name = CHILDREN[0]
    add(_header(*CHILDREN, "gauge", openmetrics))
    for p, g, pr in procs:
        if p.children is not None:
            add(f"{name}{{{g},{pr}}} {_value(p.children)}\n")
    for attr, family, doc in _PROCESS_COUNTERS:
        add(_header(family, doc, "counter", openmetrics))
        name = family + "_total"
        for p, g, pr in procs:
            add(f"{name}{{{g},{pr}}} {_value(getattr(p, attr))}\n")

    _labelled_counter(out, EVENTS, "event", snap.events, openmetrics)
    _labelled_counter(out, SAMPLE_ERRORS, "reason", snap.sample_errors, openmetrics)
    name = TICK_DURATION[0]
    add(_header(*TICK_DURATION, "histogram", openmetrics))
    for bound, n in zip(BUCKET_BOUNDS, snap.tick_buckets):
        add(f'{name}_bucket{{le="{bound}"}} {_value(n)}\n')
    add(f"{name}_count {_value(snap.tick_buckets[-1])}\n{name}_sum {_value(snap.tick_sum)}\n")
    for (family, doc), value in ((LAST_TICK, snap.last_tick), (SUPERVISOR_UP, snap.supervisor_up),
                                 (STOPPED, snap.stopped_not_running)):
        add(_header(family, doc, "gauge", openmetrics))
        add(f"{family} {_value(value)}\n")
    add(_header(*BUILD, "gauge", openmetrics))
    add(f'{BUILD[0]}{{version="{_label(__version__)}"}} {_value(1)}\n')
    if openmetrics:
        add("# EOF\n")
    return "".join(out).encode("utf-8")


def _labelled_counter(out: list[str], family: tuple[str, str], label: str,
                      values: dict[str, int], openmetrics: bool) -> None:
    out.append(_header(*family, "counter", openmetrics))
    name = family[0] + "_total"
    for key, n in sorted(values.items()):
        out.append(f'{name}{{{label}="{_label(key)}"}} {_value(n)}\n')


_FAST_ESCAPINGS = ("underscores", "allow-utf-8")  # legacy-valid names are left as they are


def fast_format(encoder: Callable[..., bytes]) -> str | None:
    """'text' or 'openmetrics' when `render` makes what this prometheus_client encoder makes
    of MemwatchCollector; None for anything else."""
    func, args, keywords = encoder, (), {}
    if isinstance(encoder, functools.partial):
        func, args, keywords = encoder.func, encoder.args, dict(encoder.keywords)
    if args or keywords.pop("escaping", "underscores") not in _FAST_ESCAPINGS:
        return None
    if func is text_format.generate_latest and not keywords:
        return "text"
    if func is openmetrics_format.generate_latest and keywords.pop("version", "1.0.0") == "1.0.0" \
            and not keywords:
        return "openmetrics"
    return None


class MemwatchRegistry(CollectorRegistry):
    """The private registry; knows its MemwatchCollector so /metrics can render it directly."""

    def __init__(self, stats: Stats) -> None:
        super().__init__(auto_describe=False)
        self._lock_others = threading.Lock()
        self._others: set[Collector] = set()
        self.memwatch = MemwatchCollector(stats)
        super().register(self.memwatch)

    def register(self, collector: Collector) -> None:
        super().register(collector)
        with self._lock_others:
            self._others.add(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        with self._lock_others:
            self._others.discard(collector)

    def render(self, accept: str | None) -> tuple[bytes, str] | None:
        """(body, content type) as prometheus_client would serve them for this Accept header,
        or None when only prometheus_client knows how."""
        encoder, content_type = text_format.choose_encoder(accept or "")
        kind = fast_format(encoder)
        if kind is None or self._others:
            return None
        return render(self.memwatch.stats.snapshot(), kind == "openmetrics"), content_type


def fast_app(registry: MemwatchRegistry, fallback: Callable[..., Iterable[bytes]]
             ) -> Callable[..., Iterable[bytes]]:
    """prometheus_client's WSGI app with the GET /metrics answer rendered by `render`."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO") != "/favicon.ico"
                and "name[]" not in parse_qs(environ.get("QUERY_STRING", ""))):
            answer = registry.render(environ.get("HTTP_ACCEPT"))
            if answer is not None:
                body, content_type = answer
                headers = [("Content-Type", content_type)]
                if text_format.gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
                    body = gzip.compress(body)
                    headers.append(("Content-Encoding", "gzip"))
                start_response("200 OK", headers)
                return [body]
        return fallback(environ, start_response)

    return app


def make_registry(stats: Stats) -> MemwatchRegistry:
    return MemwatchRegistry(stats)


class MetricsServer:
    """The /metrics endpoint. Raises OSError if the address cannot be bound."""

    def __init__(self, registry: CollectorRegistry, addr: str, port: int,
                 certfile: str | None = None, keyfile: str | None = None,
                 client_cafile: str | None = None) -> None:
        self._server, self._thread = start_http_server(
            port, addr=addr, registry=registry, certfile=certfile, keyfile=keyfile,
            client_cafile=client_cafile, client_auth_required=client_cafile is not None)
        app = self._server.get_app()
        if isinstance(registry, MemwatchRegistry) and app is not None:
            # until this line, prometheus_client's own app answers: the same bytes, slower
            self._server.set_app(fast_app(registry, app))

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
