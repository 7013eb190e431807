"""Sections 1 and 2, in process, on one running supervisord: our full tick against memmon's, and
our sampling step against a raw /proc loop."""

from __future__ import annotations

import io
import os
import shutil
import socket
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from superlance.memmon import Memmon  # type: ignore[import-untyped]
from supervisor import childutils

from listener.app import build
from listener.config.parse import parse
from listener.core.model import ProcessInfo
from listener.core.rows import ProcessRow
from listener.core.rules import Rules
from listener.core.servers import Server
from listener.host.sampler import Sampler
from listener.supervisord import protocol
from listener.supervisord.fastxml import fast_struct_array
from listener.supervisord.rpc import Supervisor
from tests.harness import event_text, short_dir

from .measure import Summary, repeat, timings
from .standin import MIXED_SERVERS, TREE_CHILDREN

HIGH = "100GB"  # limits no process reaches: nothing is ever restarted
HIGH_BYTES = 100 * 1024**3
PAGE = os.sysconf("SC_PAGE_SIZE")
# ours --children mode -> memmon's equivalent: -c is its only tree mode (a sum)
MEMMON_CUMULATIVE = {"none": False, "sum": True, "each": True, "auto": True}
# the listener's rules per --children mode; `auto`: the mixed shape's rule per group
RULES = {mode: ["-a", HIGH, "--children", mode] for mode in ("none", "sum", "each")}
RULES["auto"] = [a for group, server in MIXED_SERVERS.items() for a in
                 ("-g", f"{group}={HIGH}" + (",children=auto" if server is not Server.PLAIN else ""))]


@dataclass(frozen=True)
class Reps:
    ours: int
    memmon: int
    memmon_budget: float = 30.0  # seconds of memmon ticks per row (see measure_memmon)


@dataclass(frozen=True)
class TickRow:
    n: int
    shape: str
    mode: str
    ours: Summary
    ours_list: Summary  # of which: getAllProcessInfo over XML-RPC, in the same ticks
    ours_rest: Summary  # tick - list, tick by tick: sample, decide, stats, protocol
    parse: Summary  # our client's parse of that answer (part of the list)
    memmon: Summary | None
    memmon_flags: str


@dataclass(frozen=True)
class FloorRow:
    n: int
    shape: str
    mode: str
    pids: int  # pids whose memory is read per tick
    floor: Summary
    ours: Summary


class TimedSupervisor(Supervisor):
    """The real client, adding up the time its getAllProcessInfo calls take."""

    list_seconds = 0.0

    def processes(self) -> list[ProcessInfo]:
        began = time.perf_counter()
        try:
            return super().processes()
        finally:
            self.list_seconds += time.perf_counter() - began


class InProcessDaemon:
    """Our Daemon as listener.app.build wires it for the CLI, its supervisord client swapped for
    one that adds up the time of its listings."""

    def __init__(self, url: str, mode: str) -> None:
        self.state_dir = short_dir("mwbs-")
        config = parse([*RULES[mode], "--server-url",
                           url, "--metrics-port", "0", "--state-dir", str(self.state_dir)])
        self.parts = build(config, environ={})
        self.daemon = self.parts.daemon
        self.stats = self.parts.stats
        self.supervisor = TimedSupervisor(url, timeout=300)
        self.daemon.supervisor = self.supervisor

    def tick(self) -> None:
        """One event as the loop handles it: READY, read the TICK, handle it, RESULT OK."""
        out = io.StringIO()
        protocol.send_ready(out)
        event = protocol.read_event(io.StringIO(event_text()))
        assert event is not None
        self.daemon.handle(event)
        protocol.send_result(out, ok=True)

    def close(self) -> None:
        self.daemon.restarter.shutdown(1.0)
        self.parts.close()
        shutil.rmtree(self.state_dir, ignore_errors=True)


class InProcessMemmon:
    """superlance's Memmon with equivalent flags, reading one TICK per runforever(test=True)."""

    def __init__(self, url: str, cumulative: bool) -> None:
        rpc = childutils.getRPCInterface({"SUPERVISOR_SERVER_URL": url})
        self.memmon = Memmon(cumulative, {}, {}, HIGH_BYTES, "/usr/sbin/sendmail -t -i", None,
                             2**63, None, rpc=rpc)
        self.flags = f"{'-c ' if cumulative else ''}-a {HIGH}"

    def tick(self) -> None:
        m = self.memmon
        m.stdin, m.stdout, m.stderr = io.StringIO(event_text()), io.StringIO(), io.StringIO()
        m.runforever(test=True)
        if "Restarting" in m.stderr.getvalue():
            raise RuntimeError("memmon restarted a process: the limits are not high enough")


# --- the raw floor: what reading the same figures costs with nothing around it ---


def read_raw(path: str) -> bytes:
    """The cheapest read of a small /proc file from Python: open(2), read(2), close(2)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def read_statm_rss(pid: int) -> int:
    return int(read_raw(f"/proc/{pid}/statm").split()[1]) * PAGE


def scan_children() -> dict[int, list[int]]:
    """A raw pass over /proc/*/stat: parent -> children."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                data = read_raw(f"/proc/{name}/stat")
            except OSError:
                continue
            ppid = int(data[data.rfind(b")") + 2:].split(None, 2)[1])
            children.setdefault(ppid, []).append(int(name))
    return children


def tree_pids(pids: Sequence[int], children: dict[int, list[int]]) -> list[int]:
    out: list[int] = []
    stack = list(pids)
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


def floor_fn(pids: Sequence[int], mode: str) -> Callable[[], int]:
    if mode == "none":
        return lambda: sum(read_statm_rss(p) for p in pids)
    return lambda: sum(read_statm_rss(p) for p in tree_pids(pids, scan_children()))


# --- one supervisord's worth of measurements ---


def measure_ours(url: str, mode: str, reps: Reps) -> tuple[Summary, Summary, Summary]:
    """Our full tick; of each tick, the time getAllProcessInfo took (mostly supervisord's),
    and the rest (ours)."""
    ours = InProcessDaemon(url, mode)
    ticks: list[float] = []
    lists: list[float] = []

    def tick() -> None:
        listed = ours.supervisor.list_seconds
        began = time.perf_counter()
        ours.tick()
        ticks.append(time.perf_counter() - began)
        lists.append(ours.supervisor.list_seconds - listed)

    try:
        for _ in range(2):  # warm-up
            ours.tick()
        timings(tick, reps.ours, warmup=0)
        errors = {k: v for k, v in ours.stats.snapshot().sample_errors.items() if v}
        if errors:
            raise RuntimeError(f"sample errors during the benchmark: {errors}")
        if mode == "auto":
            check_mixed(ours.stats.snapshot().processes)
    finally:
        ours.close()
    return (Summary.of(ticks), Summary.of(lists),
            Summary.of([t - lst for t, lst in zip(ticks, lists, strict=False)]))


def check_mixed(rows: Sequence[ProcessRow]) -> None:
    """The mixed shape as our listener judged it: every `auto` master as its group's server, its
    workers each alone (multiprocessing's helpers not among them), plain ones by their own pid."""
    wrong = []
    for row in rows:
        server = MIXED_SERVERS[row.group]
        if server is Server.PLAIN:
            ok = "auto" not in row.strategy and not row.children
        else:
            ok = row.strategy.endswith(f"(auto: {server.value})") and row.children == TREE_CHILDREN
        if not ok:
            wrong.append(f"{row.namespec}: {row.strategy}, {row.children} children")
    if wrong:
        raise RuntimeError(f"the listener did not judge the mixed shape as built: {wrong[:5]}")


def raw_answer(socket_path: str) -> bytes:
    """getAllProcessInfo's HTTP body, as supervisord sends it."""
    request = xmlrpc.client.dumps((), "supervisor.getAllProcessInfo").encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(socket_path)
        sock.sendall(b"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n"
                     % len(request) + request)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks).split(b"\r\n\r\n", 1)[1]


def measure_parse(socket_path: str, reps: Reps) -> Summary:
    """Our client's parse of supervisord's answer, alone (the stdlib's if the fast path declines)."""
    body = raw_answer(socket_path)

    def parse_body() -> object:
        fast = fast_struct_array(body)
        return fast if fast is not None else xmlrpc.client.loads(body)
    return repeat(parse_body, reps.ours, warmup=1)


def measure_memmon(url: str, cumulative: bool, reps: Reps) -> tuple[Summary, str]:
    """memmon has nothing to warm up. Three repetitions at least, unless one takes more than a
    third of the budget: then as many as the budget holds, one at least."""
    memmon = InProcessMemmon(url, cumulative)
    first = timings(memmon.tick, 1, warmup=0)
    min_reps = 3 if first[0] < reps.memmon_budget / 3 else 1
    rest = timings(memmon.tick, reps.memmon - 1, warmup=0, min_reps=min_reps - 1,
                   budget=reps.memmon_budget - first[0])
    return Summary.of(first + rest), memmon.flags


def measure_floor(processes: Sequence[ProcessInfo], n: int, shape: str, mode: str,
                  reps: Reps) -> FloorRow:
    pids = [p.pid for p in processes]
    sampler, rules = Sampler(), Rules.uniform("rss", mode)
    floor = floor_fn(pids, mode)
    count = len(pids) if mode == "none" else len(tree_pids(pids, scan_children()))
    floor_s = repeat(floor, reps.ours * 2, warmup=2)
    ours_s = repeat(lambda: sampler.sample(processes, rules), reps.ours * 2, warmup=2)
    return FloorRow(n, shape, mode, count, floor_s, ours_s)
