"""Section 7: what a tick costs supervisord itself. supervisord is single-threaded: the time it
spends building an answer is time it serves nobody else (supervisorctl, other listeners, its
children's output, their state changes).

Measured on real supervisords running N `sleep infinity` stand-ins, side by side in one run:

- supervisord's CPU time (utime + stime from /proc/PID/stat) over K ticks, divided by K, for
  superlance's memmon, our listener listing every process each tick, and our listener with the
  table kept from PROCESS_STATE events (seeded by one listing, then no RPC); supervisord's idle
  CPU (nobody asking it anything) for reference, and each figure above that idle rate;
- the real listener process fed a burst of PROCESS_STATE events that move its table: the time
  to answer each, and its TICK answers with the table and listing each tick;
- a real supervisord booting N programs with the real listener under it as an [eventlistener]:
  how many events supervisord discards for each buffer_size.
"""

from __future__ import annotations

import gc
import io
import math
import os
import re
import shutil
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from bench.measure import Percentiles, Summary
from bench.standin import FLAT_COMM, FLAT_COMMAND
from bench.ticks import HIGH, InProcessDaemon, InProcessMemmon, TimedSupervisor
from listener.core.model import ProcessInfo
from listener.core.text import parse_duration
from listener.supervisord import protocol
from listener.supervisord.rpc import Supervisor, TimeoutTransport
from tests.harness import (
    PY,
    ListenerProcess,
    Supervisord,
    event_text,
    free_port,
    program,
    scrape,
    short_dir,
    value,
    wait_for,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
TICK_PERIOD = 5.0  # TICK_5: the listener's event
RESYNC = 300.0  # the listener's default --resync: one listing every 60 TICK_5s
NO_RESYNC = "30d"  # no periodic listing while measuring the table's ticks
BUFFER_SIZES = (10, 100, 1000, 10000)
# supervisor/process.py, EventListenerPool._acceptEvent, logged at error level:
# 'pool %s event buffer overflowed, discarding event %s'
OVERFLOW = re.compile(r"pool (\S+) event buffer overflowed, discarding event (\d+)")
LISTED_AGAIN = "process table listed again"  # listener.daemon's log line on a resync

Say = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    reps: int  # measurements per client and N; their median is reported
    window: float  # seconds of ticks a measurement lasts at least (K = window / tick, bounded)
    min_ticks: int  # ... with at least this many ticks (memmon: 1, its ticks last seconds)
    idle_window: float  # seconds of one idle measurement
    memmon_budget: float  # seconds of memmon ticks per N once 2 measurements are done
    burst_events: int
    tick_answers: int  # TICKs timed through the real listener, per mode

    @classmethod
    def of(cls, quick: bool, reps: int | None = None) -> Plan:
        if quick:
            return cls(reps or 3, 3.0, 20, 2.0, 10.0, 2000, 20)
        return cls(reps or 5, 10.0, 20, 5.0, 60.0, 2000, 40)


@dataclass(frozen=True)
class CostRow:
    n: int
    client: str  # "memmon", "listing", "table"
    flags: str
    ticks: int  # K: ticks per measurement
    measurements: int
    cpu: Summary  # supervisord CPU seconds per tick (/proc/PID/stat), one value per measurement
    above_idle: Summary  # the same less supervisord's idle rate times the measurement's wall time
    oncpu: Summary  # supervisord's time on CPU per tick (/proc/PID/schedstat)
    oncpu_above_idle: Summary
    rpc_per_tick: float  # XML-RPC requests the client sent per tick during the measurements
    tick: Summary  # the client's tick, wall seconds, tick by tick over every measurement


@dataclass(frozen=True)
class IdleRow:
    n: int
    window: float
    per_period: Summary  # supervisord CPU seconds per TICK_PERIOD with nobody asking it anything
    oncpu_per_period: Summary  # the same from /proc/PID/schedstat

    @property
    def rate(self) -> float:
        return self.per_period.median / TICK_PERIOD

    @property
    def oncpu_rate(self) -> float:
        return self.oncpu_per_period.median / TICK_PERIOD


@dataclass(frozen=True)
class AnswerRow:
    what: str
    answers: Percentiles  # seconds from writing the event to reading its RESULT (and READY)
    supervisord_cpu: float  # supervisord CPU seconds per event, above its idle rate
    supervisord_oncpu: float  # the same from /proc/PID/schedstat


@dataclass
class BurstRun:
    n: int
    rows: list[AnswerRow]
    events_counted: dict[str, int]  # the listener's memwatch_events_total after the burst
    events_sent: dict[str, int]
    resyncs: list[str]  # the listener's "process table listed again" lines after the seed


@dataclass(frozen=True)
class BootRow:
    n: int
    buffer_size: int
    boot: float  # seconds from starting supervisord to every program RUNNING (its log)
    drained: float  # seconds from starting supervisord to the listener answering the marker
    received: int  # PROCESS_STATE/PROCESS_GROUP events the listener answered during the boot
    discarded: int  # supervisord's "event buffer overflowed" lines for the listener's pool
    listener_restarts: int  # the listener's own RUNNING lines beyond the first


@dataclass
class SupervisordCost:
    sizes: list[int]
    plan: Plan
    clk_tck: int = CLK_TCK
    costs: list[CostRow] = field(default_factory=list)
    idle: list[IdleRow] = field(default_factory=list)
    burst: BurstRun | None = None
    boot: list[BootRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (not its children), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    rest = data[data.rfind(b")") + 2:].split()  # rest[0] is field 3 (state)
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def oncpu_seconds(pid: int) -> float:
    """The scheduler's own count of the time the process ran (/proc/PID/schedstat, in ns): a
    cross-check of utime + stime, which the kernel keeps in clock ticks (sampled at each)."""
    with open(f"/proc/{pid}/schedstat", "rb") as f:
        return int(f.read().split()[0]) / 1e9


def both(pid: int) -> tuple[float, float]:
    return cpu_seconds(pid), oncpu_seconds(pid)


# --- the three clients, each counting the XML-RPC requests it sends ---


class CountingTransport(TimeoutTransport):
    requests = 0

    def request(self, host: Any, handler: str, request_body: Any, verbose: bool = False) -> Any:
        self.requests += 1
        return super().request(host, handler, request_body, verbose)


class CountingSupervisor(TimedSupervisor):
    def __init__(self, url: str) -> None:
        super().__init__(url, timeout=300)
        self.transport = CountingTransport(url, None, None, 300)
        self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=self.transport,
                                                allow_none=True)


class CountingSupervisorTransport(SupervisorTransport):  # type: ignore[misc]
    """supervisor's own transport, as memmon uses it (childutils.getRPCTransport)."""

    requests = 0

    def request(self, host: Any, handler: str, request_body: Any, verbose: int = 0) -> Any:
        self.requests += 1
        return super().request(host, handler, request_body, verbose)


class Client:
    name = ""
    flags = ""

    def tick(self) -> None:
        raise NotImplementedError

    def requests(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


class OursClient(Client):
    """Our Daemon in process (bench.ticks.InProcessDaemon). With `table`, it is first fed one
    PROCESS_STATE event (the subscription shows) and one tick (the listing that seeds the
    table); from then on its ticks use the table. The periodic resync is moved out of the way."""

    def __init__(self, url: str, table: bool, first: ProcessInfo) -> None:
        self.ours = InProcessDaemon(url, "none")
        self.supervisor = CountingSupervisor(url)
        self.ours.supervisor = self.ours.daemon.supervisor = self.supervisor
        self.name = "table" if table else "listing"
        self.flags = f"-a {HIGH}" + (" (events=TICK_5,PROCESS_STATE,PROCESS_GROUP)" if table else "")
        if table:
            table_ = self.ours.daemon.table
            table_.resync_every = parse_duration(NO_RESYNC)
            payload = (f"processname:{first.name} groupname:{first.group} from_state:STARTING "
                       f"pid:{first.pid}")
            event = protocol.read_event(io.StringIO(event_text("PROCESS_STATE_RUNNING", payload)))
            assert event is not None
            self.ours.daemon.handle(event)
            self.ours.tick()
            if not table_.subscribed or table_.resync_reason() is not None:
                raise RuntimeError(f"the table is not in use: subscribed={table_.subscribed}, "
                                   f"resync reason {table_.resync_reason()!r}")

    def tick(self) -> None:
        self.ours.tick()

    def requests(self) -> int:
        return self.supervisor.transport.requests

    def close(self) -> None:
        self.ours.close()


class MemmonClient(Client):
    name = "memmon"

    def __init__(self, url: str) -> None:
        self.memmon = InProcessMemmon(url, False)
        self.transport = CountingSupervisorTransport(None, None, url)
        self.memmon.memmon.rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", self.transport)
        self.flags = self.memmon.flags

    def tick(self) -> None:
        self.memmon.tick()

    def requests(self) -> int:
        return self.transport.requests


# --- 1 and 2: supervisord's CPU per tick, and our whole tick ---


@dataclass
class _Measurements:
    client: Client
    k: int
    cpu: list[float] = field(default_factory=list)  # supervisord CPU seconds, whole measurement
    oncpu: list[float] = field(default_factory=list)  # the same from schedstat
    wall: list[float] = field(default_factory=list)  # seconds, whole measurement
    ticks: list[float] = field(default_factory=list)  # seconds, each tick
    requests: int = 0

    def measure(self, pid: int) -> None:
        client = self.client
        requests0 = client.requests()
        cpu0, oncpu0 = both(pid)
        began = time.perf_counter()
        for _ in range(self.k):
            gc.collect()  # as bench.measure.timings: between ticks, not inside one
            t0 = time.perf_counter()
            client.tick()
            self.ticks.append(time.perf_counter() - t0)
        self.wall.append(time.perf_counter() - began)
        cpu, oncpu = both(pid)
        self.cpu.append(cpu - cpu0)
        self.oncpu.append(oncpu - oncpu0)
        self.requests += client.requests() - requests0

    def row(self, n: int, idle: IdleRow) -> CostRow:
        def per_tick(cpu: list[float], rate: float = 0.0) -> Summary:
            return Summary.of([(c - rate * w) / self.k for c, w in zip(cpu, self.wall, strict=True)])
        return CostRow(n, self.client.name, self.client.flags, self.k, len(self.cpu),
                       per_tick(self.cpu), per_tick(self.cpu, idle.rate), per_tick(self.oncpu),
                       per_tick(self.oncpu, idle.oncpu_rate),
                       self.requests / (self.k * len(self.cpu)), Summary.of(self.ticks))


def ticks_for(client: Client, plan: Plan, warmup: int) -> int:
    """K: enough ticks to fill plan.window (the last warm-up tick's time tells how many), at
    least plan.min_ticks (memmon: at least one)."""
    t = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        client.tick()
        t = time.perf_counter() - t0
    least = 1 if isinstance(client, MemmonClient) else plan.min_ticks
    return max(least, min(100_000, math.ceil(plan.window / max(t, 1e-6))))


def measure_costs(sv: Supervisord, n: int, plan: Plan, say: Say,
                  memmon: bool = True) -> tuple[list[CostRow], IdleRow]:
    """Round robin over idle, table, listing and memmon, plan.reps times, so machine noise falls
    on all of them alike; memmon stops once its budget is spent (2 measurements at least)."""
    pid = sv.proc.pid
    first = min(sv.client.processes(), key=lambda p: p.namespec)
    clients: list[Client] = [OursClient(sv.url, True, first), OursClient(sv.url, False, first)]
    if memmon:
        clients.append(MemmonClient(sv.url))
    try:
        runs = []
        for c in clients:
            k = ticks_for(c, plan, warmup=1 if isinstance(c, MemmonClient) else 3)
            runs.append(_Measurements(c, k))
        say(f"section 7 N={n}: K = " + ", ".join(f"{r.client.name} {r.k}" for r in runs))
        idle: list[float] = []
        idle_oncpu: list[float] = []
        for rep in range(plan.reps):
            cpu0, oncpu0 = both(pid)
            began = time.perf_counter()
            time.sleep(plan.idle_window)  # a measurement window, not a wait for a condition
            cpu, oncpu = both(pid)
            per_period = TICK_PERIOD / (time.perf_counter() - began)
            idle.append((cpu - cpu0) * per_period)
            idle_oncpu.append((oncpu - oncpu0) * per_period)
            for r in runs:
                if isinstance(r.client, MemmonClient) and len(r.cpu) >= 2 \
                        and sum(r.wall) >= plan.memmon_budget:
                    continue
                r.measure(pid)
            say(f"section 7 N={n}: measurement {rep + 1}/{plan.reps} done")
        idle_row = IdleRow(n, plan.idle_window, Summary.of(idle), Summary.of(idle_oncpu))
        return [r.row(n, idle_row) for r in runs], idle_row
    finally:
        for c in clients:
            c.close()


# --- 3: event answers during a burst of state events ---


def burst_events(processes: Sequence[ProcessInfo], count: int) -> list[tuple[str, str]]:
    """Restarts as supervisord reports them, process after process: RUNNING -> STOPPING ->
    STOPPED -> STARTING -> RUNNING, each event following from the table's state (the pid kept,
    so the table stays true to the processes the listener samples)."""
    events: list[tuple[str, str]] = []
    i = 0
    while len(events) < count:
        p = processes[i % len(processes)]
        head = f"processname:{p.name} groupname:{p.group}"
        events += [("PROCESS_STATE_STOPPING", f"{head} from_state:RUNNING pid:{p.pid}"),
                   ("PROCESS_STATE_STOPPED", f"{head} from_state:STOPPING pid:{p.pid}"),
                   ("PROCESS_STATE_STARTING", f"{head} from_state:STOPPED tries:0"),
                   ("PROCESS_STATE_RUNNING", f"{head} from_state:STARTING pid:{p.pid}")]
        i += 1
    return events[:count]


def _answers(pid: int, idle: IdleRow, what: str,
             events: Sequence[tuple[str, str | None]], listener: ListenerProcess) -> AnswerRow:
    times = []
    cpu0, oncpu0 = both(pid)
    began = time.perf_counter()
    for name, payload in events:
        t0 = time.perf_counter()
        result = listener.send(name, payload)
        times.append(time.perf_counter() - t0)
        if result != b"OK":
            raise RuntimeError(f"{name} answered {result!r}: {listener.stderr()[-2000:]}")
    wall = time.perf_counter() - began
    cpu, oncpu = both(pid)
    return AnswerRow(what, Percentiles.of(times), (cpu - cpu0 - idle.rate * wall) / len(events),
                     (oncpu - oncpu0 - idle.oncpu_rate * wall) / len(events))


def _listed_again(listener: ListenerProcess) -> list[str]:
    return [line for line in listener.stderr().splitlines() if LISTED_AGAIN in line]


def burst(sv: Supervisord, n: int, plan: Plan, idle: IdleRow) -> BurstRun:
    """The real listener (metrics on), its subscription shown by one PROCESS_STATE event and its
    table seeded by one TICK; then the burst, back to back, poolserials consecutive; then TICKs
    with the table. A second listener that never sees a state event lists on every TICK."""
    pid = sv.proc.pid
    processes = sorted(sv.client.processes(), key=lambda p: p.namespec)
    first = processes[0]
    events = burst_events(processes, plan.burst_events)
    ticks: list[tuple[str, str | None]] = [("TICK_5", None)] * plan.tick_answers
    listener = ListenerProcess(["-a", HIGH, "--resync", NO_RESYNC], sv.url)
    try:
        listener.send("PROCESS_STATE_RUNNING", f"processname:{first.name} groupname:{first.group} "
                      f"from_state:STARTING pid:{first.pid}")
        for _ in range(3):  # the first lists everything (the seed); two more warm up
            listener.tick()
        seeded = _listed_again(listener)
        rows = [_answers(pid, idle, f"{len(events)} PROCESS_STATE_* back to back (burst)",
                         events, listener),
                _answers(pid, idle, "TICK_5, event-kept table (after the burst)", ticks,
                         listener)]
        samples = listener.metrics()
        counted = {name: int(value(samples, "memwatch_events_total", event=name) or 0)
                   for name in sorted({e for e, _ in events})}
        resyncs = _listed_again(listener)[len(seeded):]
    finally:
        listener.close()
    sent = {name: sum(1 for e, _ in events if e == name) for name in counted}
    sent["PROCESS_STATE_RUNNING"] = sent.get("PROCESS_STATE_RUNNING", 0) + 1  # the first one
    listing = ListenerProcess(["-a", HIGH], sv.url, metrics_port=0)
    try:
        for _ in range(2):
            listing.tick()
        rows.append(_answers(pid, idle, "TICK_5, listing each tick (no state event seen)",
                             ticks, listing))
    finally:
        listing.close()
    return BurstRun(n, rows, counted, sent, resyncs)


# --- 4: a boot burst through supervisord's event buffer ---


def listener_section(port: int, buffer_size: int, root: str) -> str:
    return (f"[eventlistener:memwatch]\n"
            f"command={PY} -m listener -a {HIGH} --metrics-port {port} --state-dir {root}/state\n"
            f"events=TICK_5,PROCESS_STATE,PROCESS_GROUP\n"
            f"buffer_size={buffer_size}\n"
            f"stderr_logfile={root}/listener.err\n"
            f"stdout_logfile=NONE\n\n")


def boot(n: int, buffer_size: int) -> BootRow:
    """supervisord boots N programs plus a `marker` with the listener under it. Once every
    program is RUNNING (supervisord's log says so, nothing asks supervisord), the marker is
    stopped: its STOPPED event is buffered after every boot event, so once the listener has
    counted it, the boot burst has gone through the buffer (delivered or discarded)."""
    root = short_dir("mwboot-")
    port = free_port()
    sections = (program("x", FLAT_COMMAND, n) + program("marker", FLAT_COMMAND)
                + listener_section(port, buffer_size, str(root)))
    began = time.monotonic()
    try:
        sv = Supervisord(sections, root, loglevel="info")
        try:
            wait_for(lambda: sv.log_text().count("entered RUNNING state") >= n + 2, 600, 0.2,
                     what=f"{n} programs, the marker and the listener RUNNING")
            booted = time.monotonic() - began
            Supervisor(sv.url, timeout=120).stop("marker:marker")

            def marker_seen() -> dict[str, int] | None:
                samples = scrape(port)
                if not value(samples, "memwatch_events_total", event="PROCESS_STATE_STOPPED"):
                    return None
                return {dict(labels)["event"]: int(v) for (name, labels), v in samples.items()
                        if name == "memwatch_events_total"}
            counted = wait_for(marker_seen, 300, 0.2, what="the listener to count the marker's stop")
            drained = time.monotonic() - began
            log = sv.log_text()
        finally:
            sv.stop()
        discarded = sum(1 for m in OVERFLOW.finditer(log) if m.group(1) == "memwatch")
        received = sum(v for e, v in counted.items() if e.startswith("PROCESS_")) - 2  # marker's
        restarts = max(0, log.count("success: memwatch entered RUNNING state") - 1)
        return BootRow(n, buffer_size, booted, drained, received, discarded, restarts)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the section ---


def run(sizes: Sequence[int], plan: Plan, say: Say, memmon: bool = True,
        buffer_sizes: Sequence[int] = BUFFER_SIZES) -> SupervisordCost:
    result = SupervisordCost(list(sizes), plan)
    largest = max(sizes)
    for n in sizes:
        say(f"section 7 N={n}: starting supervisord")
        try:
            sv = Supervisord(program("flat", FLAT_COMMAND, n), loglevel="warn", all_running=True,
                             comm=FLAT_COMM)
        except AssertionError as exc:
            result.notes.append(f"N={n}: supervisord did not start every program: {exc}")
            continue
        try:
            say(f"section 7 N={n}: supervisord's CPU per tick (idle, table, listing, memmon)")
            costs, idle = measure_costs(sv, n, plan, say, memmon)
            result.costs += costs
            result.idle.append(idle)
            if n == largest:
                say(f"section 7 N={n}: {plan.burst_events} state events through the real listener")
                result.burst = burst(sv, n, plan, idle)
        finally:
            sv.stop()
    for size in buffer_sizes:
        say(f"section 7: boot of {largest} programs, listener buffer_size={size}")
        try:
            result.boot.append(boot(largest, size))
        except AssertionError as exc:
            result.notes.append(f"boot N={largest} buffer_size={size}: {exc}")
    return result
