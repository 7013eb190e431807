"""Section 6: many TICKs through the real listener process over pipes; its RSS and CPU time.

The listener's XML-RPC peer is a local stand-in (bench.standin.StandInServer) answering with a
snapshot of a real supervisord's getAllProcessInfo for real running processes: supervisord
itself needs tens of milliseconds per getAllProcessInfo at 200 processes, which would make
100,000 events take hours and measure supervisord rather than the listener.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from bench.measure import Summary, repeat
from bench.scrape import get
from bench.standin import StandInServer
from listener.supervisord.rpc import Supervisor
from tests.harness import ListenerProcess, Supervisord, free_port

SCRAPE_EVERY = 100  # ticks between two GET /metrics (the exporter's memory is soaked too)


@dataclass
class SoakRun:
    events: int
    processes: int
    server: str
    real_list: Summary  # getAllProcessInfo from the real supervisord, for the record
    standin_list: Summary
    rss_first: int = 0  # after the first tick
    rss_warm: int = 0  # after the warm-up ticks
    rss_end: int = 0
    rss_max: int = 0
    warmup: int = 0
    cpu_per_tick: float = 0.0  # listener CPU seconds (user+system) per tick after warm-up
    wall_per_tick: float = 0.0
    scrapes: int = 0
    trace: list[tuple[int, int]] = field(default_factory=list)  # (events, rss)


def run(sv: Supervisord, events: int, reps: int) -> SoakRun:
    real = Supervisor(sv.url, timeout=120)
    infos = real._proxy.supervisor.getAllProcessInfo()
    real_list = repeat(real.processes, reps, warmup=1)
    path = f"{sv.root}/standin.sock"
    server = StandInServer(path, infos)
    try:
        standin = Supervisor(f"unix://{path}")
        if [replace(p, listed_at=0) for p in standin.processes()] != [
                replace(p, listed_at=0) for p in real.processes()]:
            raise RuntimeError("the stand-in does not answer like supervisord")
        standin_list = repeat(standin.processes, reps, warmup=1)
        result = SoakRun(events, len(infos), "stand-in", real_list, standin_list)
        port = free_port()
        listener = ListenerProcess(["-a", "100GB"], f"unix://{path}", metrics_port=port)
        try:
            _soak(listener, port, events, result)
        finally:
            listener.close()
    finally:
        server.close()
    return result


def _soak(listener: ListenerProcess, port: int, events: int, result: SoakRun) -> None:
    listener.tick()
    result.rss_first = listener.rss()
    result.warmup = min(1000, max(1, events // 10))
    for _ in range(result.warmup - 1):
        listener.tick()
    result.rss_warm = listener.rss()
    cpu0, wall0 = listener.cpu_seconds(), time.perf_counter()
    every = max(1, events // 20)
    for i in range(result.warmup, events):
        listener.tick()
        if i % SCRAPE_EVERY == 0:
            get(port)
            result.scrapes += 1
        if i % every == 0:
            rss = listener.rss()
            result.trace.append((i, rss))
            result.rss_max = max(result.rss_max, rss)
    measured = max(1, events - result.warmup)
    result.cpu_per_tick = (listener.cpu_seconds() - cpu0) / measured
    result.wall_per_tick = (time.perf_counter() - wall0) / measured
    result.rss_end = listener.rss()
    result.rss_max = max(result.rss_max, result.rss_end)
    result.trace.append((events, result.rss_end))
