"""Section 5: /metrics latency and size (prometheus_client's encoder behind our HTTP server), and
how much scraping delays the listener's answers to events."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import generate_latest

from bench.standin import StandInServer
from listener.core import policy
from listener.core.model import ProcessInfo, Sample
from listener.core.rows import watched_rows
from listener.core.rules import Rules
from listener.web.httpserver import HttpServer
from listener.web.metrics import make_registry
from listener.web.stats import Stats
from tests.harness import ListenerProcess, short_dir

from .measure import Percentiles, Summary, repeat


@dataclass(frozen=True)
class ScrapeRow:
    source: str
    processes: int
    series: int
    size: int  # bytes of one /metrics answer
    http: Summary  # GET /metrics over HTTP, new connection each time (as Prometheus does)
    library: Summary | None = None  # prometheus_client's generate_latest() in process, no HTTP
    listener_rss: int | None = None  # the real listener's RSS after its ticks


@dataclass(frozen=True)
class ScrapeLatencyRun:
    """Event-answer times of the real listener, with and without a scraper at work."""

    event: str  # "TICK_5" (a whole tick) or "PROCESS_STATE_RUNNING" (answered at once)
    processes: int
    quiet: Percentiles  # seconds per event, nothing scraping
    scraped: Percentiles  # the same while a client GETs /metrics back to back
    scrapes: int  # GETs completed during the scraped phase


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
    decision = policy.decide(procs, samples, Rules(any=2**30), policy.PolicyState(), now)
    stats = Stats()
    stats.event("TICK_5")
    stats.supervisor_up(True)
    stats.observe(watched_rows(decision.judgements), now)
    stats.tick_done(now, 0.01)
    return stats


def synthetic(n: int, reps: int) -> ScrapeRow:
    registry = make_registry(filled_stats(n))
    server = HttpServer(make_wsgi_app(registry), "127.0.0.1", 0)
    try:
        http, body = scrape(server.port, reps)
    finally:
        server.close()
    library = repeat(lambda: generate_latest(registry), max(5, reps // 4), warmup=1)
    return ScrapeRow(f"Stats filled directly with {n} judgements, real HttpServer", n,
                     series(body), len(body), http, library)


SCRAPER = """
import sys, urllib.request
url = sys.argv[1]
while True:
    with urllib.request.urlopen(url, timeout=30) as resp:
        resp.read()
    print(flush=True)
"""


class Scraper:
    """GET /metrics back to back for as long as the `with` block lasts, from a process of its
    own (a thread here would compete with the benchmark's own timing for its interpreter)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.count = 0

    def __enter__(self) -> Scraper:
        self._proc = subprocess.Popen([sys.executable, "-c", SCRAPER,
                                       f"http://127.0.0.1:{self.port}/metrics"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # one scrape done: it is at work
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.kill()
        out, _ = self._proc.communicate()
        self.count = 1 + out.count(b"\n")


def _for_a_while(timed: Callable[[], float], events: int, seconds: float) -> list[float]:
    """`events` timings at least, and more until `seconds` have passed."""
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while len(times) < events or time.monotonic() < deadline:
        times.append(timed())
    return times


def latency_under_scrapes(n: int, events: int, seconds: float = 5.0) -> list[ScrapeLatencyRun]:
    """The real listener watching n processes (a stand-in supervisord lists this process n
    times under n names, so every sample is a real /proc read), events answered with and
    without a client scraping /metrics back to back."""
    root = short_dir("mwbl-")
    me = {"group": "g", "pid": os.getpid(), "statename": "RUNNING", "state": 20,
          "start": int(time.time()) - 3600, "stop": 0, "now": int(time.time()), "spawnerr": "",
          "exitstatus": 0, "logfile": "", "stdout_logfile": "", "stderr_logfile": "",
          "description": ""}
    infos = [{**me, "name": f"p{i:04d}"} for i in range(n)]
    server = StandInServer(f"{root}/standin.sock", infos)
    listener = ListenerProcess(["-a", "100GB"], f"unix://{root}/standin.sock", root)
    runs = []
    try:
        listener.tick()
        for name in ("TICK_5", "PROCESS_STATE_RUNNING"):
            payload = None if name == "TICK_5" else "processname:p0000 groupname:g from_state:STARTING pid:1"

            def timed(eventname: str = name, body: str | None = payload) -> float:
                began = time.perf_counter()
                assert listener.send(eventname, body) == b"OK"
                return time.perf_counter() - began

            quiet = _for_a_while(timed, events, seconds)
            with Scraper(listener.metrics_port) as scraper:
                scraped = _for_a_while(timed, events, seconds)
            runs.append(ScrapeLatencyRun(name, n, Percentiles.of(quiet), Percentiles.of(scraped),
                                         scraper.count))
    finally:
        listener.close()
        server.close()
        shutil.rmtree(root, ignore_errors=True)
    return runs
