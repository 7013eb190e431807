"""Section 4: from writing a TICK to the real listener process to reading its RESULT, idle and
while a slow restart (a program that ignores SIGTERM, stopwaitsecs=10) is in flight."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass

from bench.measure import Percentiles
from bench.standin import FLAT_COMMAND
from tests.harness import HOG, PY, ListenerProcess, Supervisord, program

SLOW = "slow:slow"
SLOW_MB = 30
SLOW_LIMIT = "10MB"


@dataclass(frozen=True)
class LatencyRun:
    phase: str
    programs: int
    answers: Percentiles  # seconds per event
    in_flight: int  # events answered while the slow program was STOPPING (a stop in flight)
    restarts: int  # distinct stops (pids) of the slow program the events were answered during


def sections(n: int) -> str:
    return program("flat", FLAT_COMMAND, n) + program(
        "slow", f"{PY} {HOG} --mb {SLOW_MB} --ignore-term", stopwaitsecs=10, startsecs=1,
        stopasgroup="false", killasgroup="false")


CHUNK = 250  # events timed back to back; the slow program's state is read between chunks


def _slow(sv: Supervisord) -> tuple[str, int]:
    info = sv.client.process(SLOW)
    return info.statename, info.pid


def run(sv: Supervisord, n: int, events: int, cap_seconds: float = 300.0) -> list[LatencyRun]:
    """Idle: `events` events. Restart in flight: events are sent in chunks until `events` of
    them were answered while one stop was in flight; a chunk counts when the slow program was
    STOPPING, with the same pid, before and after it (nothing polls supervisord meanwhile: a
    poll would compete with the listener for supervisord and skew the tail)."""
    runs = []
    for phase, args in (("idle", ["-a", "100GB"]),
                        ("restart in flight", ["-a", "100GB", "-p", f"slow={SLOW_LIMIT}"])):
        sv.wait_running()
        listener = ListenerProcess(args, sv.url, metrics_port=0)
        times: list[float] = []
        stops: set[int] = set()
        try:
            if phase == "idle":
                times = [listener.timed_tick() for _ in range(events)]
            else:
                deadline = time.monotonic() + cap_seconds
                while len(times) < events and time.monotonic() < deadline:
                    before = _slow(sv)
                    chunk = [listener.timed_tick() for _ in range(CHUNK)]
                    if before[0] == "STOPPING" and _slow(sv) == before:
                        times += chunk
                        stops.add(before[1])
        finally:
            if phase == "idle":
                listener.close()
            else:  # a clean exit would wait for the restart in flight; so would supervisord
                listener.kill()
                with contextlib.suppress(OSError):
                    os.kill(sv.client.process(SLOW).pid, signal.SIGKILL)
        runs.append(LatencyRun(phase, n + 1, Percentiles.of(times), 0 if phase == "idle" else len(times),
                               len(stops)))
    return runs
