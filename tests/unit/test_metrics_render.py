"""listener.metrics.render (the fast /metrics path) makes exactly what prometheus_client's own
encoders make of MemwatchCollector, and the server answers every request as prometheus_client's
app would."""

from __future__ import annotations

import gzip
import socket
import urllib.request
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from listener.metrics import MemwatchCollector, MetricsServer, make_registry, render
from listener.stats import TICK_BUCKETS, ProcessStats, Snapshot


class FixedStats:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def snapshot(self) -> Snapshot:
        return self.snap


def library_registry(snap: Snapshot) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MemwatchCollector(FixedStats(snap)))  # type: ignore[arg-type]
    return registry


counts = st.integers(0, 5000)
process_stats = st.builds(
    ProcessStats,
    group=st.text(max_size=12), process=st.text(max_size=12),
    memory=st.none() | st.integers(0, 2**42), measure=st.sampled_from(["rss", "pss", "uss"]),
    limit=st.none() | st.integers(0, 2**42), over_samples=counts,
    children=st.none() | st.integers(0, 64), restarts=counts, restart_failures=counts,
    restarts_suppressed=counts, child_signals=counts, dry_run_actions=counts)


@st.composite
def snapshots(draw: Any) -> Snapshot:
    increments = draw(st.lists(st.integers(0, 10**6), min_size=len(TICK_BUCKETS) + 1,
                               max_size=len(TICK_BUCKETS) + 1))
    cumulative = tuple(sum(increments[:i + 1]) for i in range(len(increments)))
    return Snapshot(
        processes=tuple(draw(st.lists(process_stats, max_size=8))),
        events=draw(st.dictionaries(st.text(max_size=10), counts, max_size=4)),
        sample_errors=draw(st.dictionaries(st.text(max_size=10), counts, max_size=4)),
        supervisor_up=draw(st.sampled_from([0, 1])),
        last_tick=draw(st.floats(0, 4e9)),
        tick_buckets=cumulative,
        tick_sum=draw(st.floats(0, 1e7)),
        stopped_not_running=draw(counts),
    )


def sample_snapshot() -> Snapshot:
    return Snapshot(
        processes=(ProcessStats("web", "web_00", 400 * 2**20, "pss", 2**30, 2, 4, restarts=3),
                   ProcessStats('we"ird\\', "new\nline", None, "rss", None, 0, None),
                   ProcessStats("worker", "worker_00", 123, "rss", 1024, 0, 0, child_signals=1)),
        events={"TICK_5": 12, "malformed": 0, "PROCESS_STATE": 2},
        sample_errors={"vanished": 1, "zombie": 0},
        supervisor_up=1, last_tick=1764031234.567,
        tick_buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14), tick_sum=0.123,
        stopped_not_running=1)


@settings(max_examples=200)
@given(snapshots())
def test_render_is_what_prometheus_client_makes_of_the_collector(snap: Snapshot) -> None:
    registry = library_registry(snap)
    assert render(snap) == generate_latest(registry)
    assert render(snap, openmetrics=True) == generate_openmetrics(registry)


def test_render_of_a_fixed_snapshot() -> None:
    snap = sample_snapshot()
    assert render(snap) == generate_latest(library_registry(snap))
    assert render(snap, True) == generate_openmetrics(library_registry(snap))


ACCEPTS = [
    None, "text/plain", "text/plain;version=0.0.4", "text/plain; version=1.0.0",
    "text/plain;version=1.0.0;escaping=underscores", "text/plain;version=1.0.0;escaping=allow-utf-8",
    "text/plain;version=1.0.0;escaping=dots", "text/plain;version=1.0.0;escaping=values",
    "application/openmetrics-text", "application/openmetrics-text;version=1.0.0",
    "application/openmetrics-text;version=0.0.1", "application/openmetrics-text;version=2.0.0",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    # Prometheus 2.x and 3.x defaults
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-"
    "text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;"
    "version=0.0.4;q=0.3,*/*;q=0.2",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int, path: str, accept: str | None, gz: bool) -> tuple[int, str, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if accept is not None:
        request.add_header("Accept", accept)
    if gz:
        request.add_header("Accept-Encoding", "gzip")
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = resp.read()
        encoding = resp.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        return resp.status, resp.headers.get("Content-Type", ""), encoding, body


def test_the_server_answers_as_prometheus_client_does() -> None:
    stats = FixedStats(sample_snapshot())
    ours = MetricsServer(make_registry(stats), "127.0.0.1", 0)  # type: ignore[arg-type]
    theirs_port = free_port()
    theirs, _ = start_http_server(theirs_port, addr="127.0.0.1",
                                  registry=library_registry(stats.snap))
    try:
        for path in ("/metrics", "/", "/metrics?name[]=memwatch_supervisor_up", "/favicon.ico"):
            for accept in ACCEPTS:
                for gz in (False, True):
                    assert fetch(ours.port, path, accept, gz) == fetch(theirs_port, path, accept, gz)
    finally:
        ours.close()
        theirs.shutdown()
        theirs.server_close()


def test_a_registry_with_another_collector_is_rendered_by_prometheus_client() -> None:
    stats = FixedStats(sample_snapshot())
    registry = make_registry(stats)  # type: ignore[arg-type]

    class Extra:
        def collect(self) -> list[Any]:
            from prometheus_client.core import GaugeMetricFamily
            return [GaugeMetricFamily("extra", "An extra gauge.", value=7)]

    extra = Extra()
    registry.register(extra)  # type: ignore[arg-type]
    assert registry.render(None) is None
    assert b"extra 7.0" in generate_latest(registry)
    registry.unregister(extra)  # type: ignore[arg-type]
    rendered = registry.render(None)
    assert rendered is not None and rendered[0] == generate_latest(registry)
