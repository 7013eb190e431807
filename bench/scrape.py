"""Section 5: /metrics latency and size, from the real listener and from Stats filled directly."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass

from prometheus_client.exposition import generate_latest

from bench.harness import free_port
from listener import policy
from listener.config import Config, Limits
from listener.metrics import MetricsServer, make_registry
from listener.model import ProcessInfo, Sample
from listener.stats import Stats

from .measure import Summary, repeat


@dataclass(frozen=True)
class ScrapeRow:
    source: str
    processes: int
    series: int
    size: int  # bytes of one /metrics answer
    http: Summary  # GET /metrics over HTTP, new connection each time (as Prometheus does)
    render: Summary | None  # our renderer in process, no HTTP
    library: Summary | None = None  # prometheus_client's generate_latest() of the same registry
    listener_rss: int | None = None  # the real listener's RSS after its ticks


def get(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
        return bytes(resp.read())


def series(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))


def scrape(port: int, reps: int) -> tuple[Summary, bytes]:
    body = get(port)
    return repeat(lambda: get(port), reps, warmup=3), body


def filled_stats(n: int) -> Stats:
    """Stats as the daemon leaves them after a tick of n processes (no supervisord)."""
    now = time.time()
    procs = [ProcessInfo(f"group{i // 50:02d}", f"proc_{i:04d}", 10_000 + i, "RUNNING", now - 3600)
             for i in range(n)]
    samples = {p.namespec: Sample(50 * 2**20 + p.pid, "rss", 0, ()) for p in procs}
    config = Config(limits=Limits(any=2**30))
    decision = policy.decide(procs, samples, config, policy.PolicyState(), now)
    stats = Stats()
    stats.event("TICK_5")
    stats.supervisor_up(True)
    stats.observe(decision.judgements)
    stats.tick_done(now, 0.01)
    return stats


def synthetic(n: int, reps: int) -> ScrapeRow:
    stats = filled_stats(n)
    registry = make_registry(stats)
    server = MetricsServer(registry, "127.0.0.1", free_port())
    try:
        http, body = scrape(server.port, reps)
    finally:
        server.close()
    fast = getattr(registry, "render", None)  # absent in listener/ before the fast path
    render = repeat(lambda: fast(None), reps, warmup=3) if fast else None
    library = repeat(lambda: generate_latest(registry), max(5, reps // 4), warmup=1)
    return ScrapeRow(f"Stats filled directly with {n} judgements, real MetricsServer", n,
                     series(body), len(body), http, render, library)
