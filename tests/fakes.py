"""The unit tests' stand-ins for what the listener is handed through its constructors:
supervisord (its XML-RPC side and the events it writes to stdin), the sampler, the child
signaller, the restart pool and the clocks. Small, hand-written, and each keeps what it was
asked, for the test to read back."""

from __future__ import annotations

import io
import xmlrpc.client
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace

from listener.core.model import ProcessInfo, Restart, Sample, SignalChild
from listener.core.rules import Rules
from listener.host.sampler import SampleResult
from listener.supervisord.rpc import Fault

IN_PROGRESS = ("STARTING", "BACKOFF", "RUNNING")  # a start is refused ALREADY_STARTED


class Clock:
    """A clock the test moves by setting `now`; call it for the time."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Clocks:
    """The three clocks a listener reads, each a Clock the test moves: monotonic (durations),
    wall (supervisord's times), boot (CLOCK_BOOTTIME, the kernel's start times)."""

    monotonic: Clock = field(default_factory=lambda: Clock(10.0))
    wall: Clock = field(default_factory=lambda: Clock(2000.0))
    boot: Clock = field(default_factory=lambda: Clock(500.0))


class Inline(Executor):
    """The restart pool, run in the caller's thread: each piece of work is done when submit
    returns."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class FakeSupervisor:
    """supervisord's XML-RPC side: a process table (pids from 100), stop and start that change
    it as supervisord does, faults scripted per call, and an off switch (`up`).

    stop and start raise the next scripted fault, if any. A start refused with SPAWN_ERROR or
    ABNORMAL_TERMINATION leaves the process in `after_failed_start` (BACKOFF: supervisord
    retries by itself; FATAL: it gave up); BAD_NAME means it was removed from supervisord."""

    display_url = "unix:///fake.sock"

    def __init__(self, *namespecs: str, stop_faults: Sequence[int] = (),
                 start_faults: Sequence[int] = (), after_failed_start: str = "FATAL") -> None:
        self.table = {n: ProcessInfo(*n.split(":"), pid=100 + i, statename="RUNNING", start=0.0)
                      for i, n in enumerate(namespecs)}
        self.up = True
        self.stop_faults = list(stop_faults)
        self.start_faults = list(start_faults)
        self.after_failed_start = after_failed_start
        self.calls: list[tuple[str, str]] = []  # (info|stop|start, namespec), in order
        self.listings = 0

    @property
    def actions(self) -> list[tuple[str, str]]:
        """The calls that change something: stops and starts."""
        return [call for call in self.calls if call[0] != "info"]

    def verbs(self) -> list[str]:
        return [verb for verb, _ in self.calls]

    def state(self, namespec: str) -> str:
        return self.table[namespec].statename

    def update(self, namespec: str, **changes: object) -> None:
        """Change a process as someone else would (a human, supervisord itself)."""
        self.table[namespec] = replace(self.table[namespec], **changes)  # type: ignore[arg-type]

    def processes(self) -> list[ProcessInfo]:
        self._reachable()
        self.listings += 1
        return list(self.table.values())

    def process(self, namespec: str) -> ProcessInfo:
        self._reachable()
        self.calls.append(("info", namespec))
        if namespec not in self.table:
            raise xmlrpc.client.Fault(Fault.BAD_NAME, f"BAD_NAME: {namespec}")
        return self.table[namespec]

    def stop_waits(self) -> dict[str, float]:
        self._reachable()
        return {n: 10.0 for n in self.table}  # supervisord's default stopwaitsecs

    def stop(self, namespec: str) -> None:
        self._reachable()
        self.calls.append(("stop", namespec))
        if self.stop_faults:
            raise xmlrpc.client.Fault(self.stop_faults.pop(0), "scripted")
        self.update(namespec, statename="STOPPED", pid=0)

    def start(self, namespec: str) -> None:
        self._reachable()
        self.calls.append(("start", namespec))
        if self.state(namespec) in IN_PROGRESS:
            raise xmlrpc.client.Fault(Fault.ALREADY_STARTED, f"ALREADY_STARTED: {namespec}")
        if self.start_faults:
            code = self.start_faults.pop(0)
            if code == Fault.BAD_NAME:
                del self.table[namespec]
            elif code in (Fault.SPAWN_ERROR, Fault.ABNORMAL_TERMINATION):
                self.update(namespec, statename=self.after_failed_start)
            raise xmlrpc.client.Fault(code, "scripted")
        self.update(namespec, statename="RUNNING", pid=max(p.pid for p in self.table.values()) + 1)

    def _reachable(self) -> None:
        if not self.up:
            raise ConnectionRefusedError(111, "Connection refused")


@dataclass
class FakeSampler:
    """Memory by namespec, as the test sets it, for the processes asked about that run; it
    keeps the processes it was asked about and the rules of the last tick."""

    memory: dict[str, int] = field(default_factory=dict)
    fail: bool = False
    asked: list[Sequence[ProcessInfo]] = field(default_factory=list)
    rules: Rules | None = None

    def sample(self, processes: Sequence[ProcessInfo], rules: Rules,
               now: float | None = None, pressure: bool = False) -> SampleResult:
        self.asked.append(processes)
        self.rules = rules
        if self.fail:
            raise RuntimeError("a bug in the sampler")
        samples = {p.namespec: Sample(self.memory[p.namespec], "rss", 0, ())
                   for p in processes if p.namespec in self.memory and p.pid}
        return SampleResult(samples, Tally())


@dataclass
class FakeMailer:
    """The mails the listener would send, by kind: ("restarted" | "start failed", namespec)."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def restarted(self, action: Restart) -> None:
        self.sent.append(("restarted", action.target.namespec))

    def start_failed(self, namespec: str) -> None:
        self.sent.append(("start failed", namespec))


@dataclass
class FakeSignaller:
    sent: list[SignalChild] = field(default_factory=list)

    def send(self, action: SignalChild) -> bool:
        self.sent.append(action)
        return True


class Script(io.TextIOBase):
    """stdin as supervisord writes it; a step may change the world before its event is read."""

    def __init__(self, *steps: str | Callable[[], object]) -> None:
        self._steps = list(steps)
        self._buffer = ""

    def _fill(self) -> None:
        while not self._buffer and self._steps:
            step = self._steps.pop(0)
            if callable(step):
                step()
            else:
                self._buffer = step

    def readline(self, limit: int | None = -1) -> str:  # type: ignore[override]
        self._fill()
        end = self._buffer.find("\n") + 1 or len(self._buffer)
        if limit is not None and limit >= 0:
            end = min(end, limit)
        line, self._buffer = self._buffer[:end], self._buffer[end:]
        return line

    def read(self, size: int | None = -1) -> str:
        self._fill()
        size = len(self._buffer) if size is None or size < 0 else size
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def event(name: str = "TICK_5", payload: str = "when:1000", poolserial: int = 1) -> str:
    """One event as supervisord writes it to a listener's stdin."""
    return (f"ver:3.0 server:supervisor serial:1 pool:memwatch poolserial:{poolserial} "
            f"eventname:{name} len:{len(payload)}\n{payload}")
