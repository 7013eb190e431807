"""Section 8: event answers while 50 clients hold the metrics port busy on `/`, `/status` and
`/metrics`, at 300 processes with a full history (the status page's sparklines).

`python -m bench.http_load` runs it alone; `python -m bench --sections 8` runs it with the rest
(its figures then go into the summary's notes)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.measure import Percentiles, ms
from bench.standin import StandInServer
from listener.tools.table import table
from listener.web.stats import HISTORY
from tests.harness import ListenerProcess, short_dir

ROUTES = ("/", "/status", "/metrics")
EVENTS = ("PROCESS_STATE_RUNNING", "TICK_5")
STATE_PAYLOAD = "processname:p0000 groupname:g from_state:STARTING pid:1"

# 50 threads in a process of their own (threads here would compete with the timing for this
# interpreter), each GETting one route back to back; a line per answer, "x" per failure
CLIENTS = """
import sys, threading, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
lock = threading.Lock()
def client():
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:
                resp.read()
            mark = "\\n"
        except Exception:
            mark = "x\\n"
        with lock:
            sys.stdout.write(mark)
            sys.stdout.flush()
for _ in range(n):
    threading.Thread(target=client, daemon=True).start()
threading.Event().wait()
"""


@dataclass(frozen=True)
class LoadRun:
    route: str  # "" for the quiet baseline
    event: str
    processes: int
    clients: int
    answers: Percentiles  # seconds from writing the event to reading its RESULT
    served: int  # answers the clients got during the phase
    failed: int  # requests that failed (refused, reset, timed out)


class Clients:
    """`n` clients on `url` for as long as the `with` block lasts."""

    def __init__(self, url: str, n: int) -> None:
        self.url, self.n = url, n
        self.served = self.failed = 0

    def __enter__(self) -> Clients:
        self._proc = subprocess.Popen([sys.executable, "-c", CLIENTS, self.url, str(self.n)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # one answer in: they are at work
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.kill()
        out, _ = self._proc.communicate()
        self.failed = out.count(b"x")
        self.served = 1 + out.count(b"\n") - self.failed


def _timed(listener: ListenerProcess, event: str, seconds: float) -> list[float]:
    """Answers to `event`, one after the other, for `seconds`."""
    body = STATE_PAYLOAD if event != "TICK_5" else None
    times: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or len(times) < 20:
        began = time.perf_counter()
        assert listener.send(event, body) == b"OK"
        times.append(time.perf_counter() - began)
    return times


def run(n: int = 300, clients: int = 50, seconds: float = 10.0,
        routes: Sequence[str] = ROUTES) -> list[LoadRun]:
    """The real listener watching n processes (a stand-in supervisord lists this process n
    times under n names: every sample is a real /proc read), its history filled by HISTORY
    ticks; then each event timed quiet and under `clients` clients per route."""
    root = short_dir("mwhl-")
    me = {"group": "g", "pid": os.getpid(), "statename": "RUNNING", "state": 20,
          "start": int(time.time()) - 3600, "stop": 0, "now": int(time.time()), "spawnerr": "",
          "exitstatus": 0, "logfile": "", "stdout_logfile": "", "stderr_logfile": "",
          "description": ""}
    server = StandInServer(f"{root}/standin.sock", [{**me, "name": f"p{i:04d}"} for i in range(n)])
    listener = ListenerProcess(["-a", "100GB"], f"unix://{root}/standin.sock", root)
    runs = []
    try:
        for _ in range(HISTORY):
            listener.tick()
        for route in ("", *routes):
            for event in EVENTS:
                if not route:
                    times, served, failed = _timed(listener, event, seconds), 0, 0
                else:
                    url = f"http://127.0.0.1:{listener.metrics_port}{route}"
                    with Clients(url, clients) as load:
                        times = _timed(listener, event, seconds)
                    served, failed = load.served, load.failed
                runs.append(LoadRun(route, event, n, clients if route else 0,
                                    Percentiles.of(times), served, failed))
    finally:
        listener.close()
        server.close()
        shutil.rmtree(root, ignore_errors=True)
    return runs


def render(runs: Sequence[LoadRun]) -> str:
    rows = [[r.route or "(quiet)", r.event, str(r.clients), str(r.answers.n), ms(r.answers.p50),
             ms(r.answers.p99), ms(r.answers.max), str(r.served), str(r.failed)] for r in runs]
    return table([["route", "event", "clients", "events", "p50 ms", "p99 ms", "max ms",
                   "served", "failed"], *rows])


def notes(runs: Sequence[LoadRun]) -> list[str]:
    """One line per route and event, for `python -m bench`'s summary."""
    return [f"section 8: {r.route or 'quiet'} x{r.clients}, {r.event} at {r.processes} processes: "
            f"p50 {ms(r.answers.p50)} ms, p99 {ms(r.answers.p99)} ms, max {ms(r.answers.max)} ms; "
            f"{r.served} served, {r.failed} failed" for r in runs]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__)
    p.add_argument("--processes", type=int, default=300)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=10.0, help="per route and event")
    p.add_argument("--routes", default=",".join(ROUTES))
    args = p.parse_args(argv)
    runs = run(args.processes, args.clients, args.seconds, args.routes.split(","))
    print(render(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
