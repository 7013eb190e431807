"""Section 4: from writing a TICK to the real listener process to reading its RESULT, idle and
while a slow restart (a program that ignores SIGTERM, stopwaitsecs=10) is in flight."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass

from bench.harness import FLAT_COMMAND, HOG, PY, ListenerProcess, Supervisord, program
from listener.supervisor import Supervisor

SLOW = "slow:slow"
SLOW_MB = 30
SLOW_LIMIT = "10MB"


@dataclass(frozen=True)
class LatencyRun:
    phase: str
    programs: int
    times: list[float]  # seconds per event
    in_flight: int  # events answered while the slow program was STOPPING (a stop in flight)
    restarts: int  # stops of the slow program seen during the run


def sections(n: int) -> str:
    return program("flat", FLAT_COMMAND, n) + program(
        "slow", f"{PY} {HOG} --mb {SLOW_MB} --ignore-term", stopwaitsecs=10, startsecs=1,
        stopasgroup="false", killasgroup="false")


class StateWatcher:
    """Polls the slow program's state from its own XML-RPC client, every 20 ms."""

    def __init__(self, url: str) -> None:
        self.client = Supervisor(url, timeout=30)
        self.intervals: list[tuple[float, float]] = []  # (from, to) spent STOPPING
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        since: float | None = None
        while not self._stop.is_set():
            now = time.perf_counter()
            state = self.client.process(SLOW).statename
            if state == "STOPPING" and since is None:
                since = now
            elif state != "STOPPING" and since is not None:
                self.intervals.append((since, now))
                since = None
            self._stop.wait(0.02)
        if since is not None:
            self.intervals.append((since, time.perf_counter()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()

    def during(self, began: float, ended: float) -> bool:
        return any(a <= began and ended <= b for a, b in self.intervals)


def run(sv: Supervisord, n: int, events: int) -> list[LatencyRun]:
    runs = []
    for phase, args in (("idle", ["-a", "100GB"]),
                        ("restart in flight", ["-a", "100GB", "-p", f"slow={SLOW_LIMIT}"])):
        sv.wait_running()
        listener = ListenerProcess(args, sv.url)
        watcher = StateWatcher(sv.url)
        stamps: list[tuple[float, float]] = []
        try:
            if phase != "idle":  # the first tick starts the restart; wait until the stop is on
                listener.tick()
                deadline = time.monotonic() + 10
                while not watcher.intervals and time.monotonic() < deadline:
                    if sv.client.process(SLOW).statename == "STOPPING":
                        break
                    time.sleep(0.01)
            for _ in range(events):
                began = time.perf_counter()
                elapsed = listener.tick()
                stamps.append((began, began + elapsed))
        finally:
            watcher.close()
            if phase == "idle":
                listener.close()
            else:  # a clean exit would wait for the restart in flight; so would supervisord
                listener.kill()
                with contextlib.suppress(OSError):
                    os.kill(sv.client.process(SLOW).pid, signal.SIGKILL)
        in_flight = sum(watcher.during(a, b) for a, b in stamps)
        runs.append(LatencyRun(phase, n + 1, [b - a for a, b in stamps], in_flight,
                               len(watcher.intervals)))
    return runs
