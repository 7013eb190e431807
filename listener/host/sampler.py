"""Memory of supervised processes, read straight from /proc (never `ps`).

Each process is measured as its rule says (measure, children); with `children = auto`, as the
server its command line shows (listener.core.servers, read once per process start). One pass per
tick: when any rule looks into trees, a single scan of /proc builds the parent->children map
for every supervised tree at once, so the cost stays linear in the number of processes. RSS is
read from /proc/PID/statm (listener.host.procfs); PSS/USS come from psutil.

A figure is trusted only if the pid still belongs to the process supervisord listed: its
kernel start time must not be later than the listing (else the pid was reused), and it must
not be a zombie (which holds no memory). One failed read skips one pid, counted by reason;
it never costs the tick.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from listener.core.model import (
    ACCESS_DENIED,
    PID_REUSED,
    UNREADABLE,
    VANISHED,
    ZOMBIE,
    ProcessInfo,
    Sample,
    Unit,
)
from listener.core.rules import Rules, Strategy
from listener.core.states import RUNNING
from listener.host.procfs import ProcReader, ProcStat, children_map, descendants
from listener.host.recognition import Recogniser

log = logging.getLogger("memwatch.sampler")


@dataclass
class SampleResult:
    samples: dict[str, Sample]
    errors: Counter[str]


def identity_problem(proc: ProcessInfo, stat: ProcStat) -> str | None:
    """Why the process at proc.pid cannot stand for the one supervisord listed, if it can't."""
    if stat.state == "Z":
        return ZOMBIE
    if stat.since_boot > proc.listed_at:
        return PID_REUSED
    return None


class _Tree:
    """This tick's /proc scan and parent->children map, made at most once, when first asked."""

    def __init__(self, reader: ProcReader) -> None:
        self._reader = reader
        self._table: dict[int, ProcStat] | None = None
        self._kids: dict[int, list[int]] | None = None

    def table(self) -> dict[int, ProcStat]:
        if self._table is None:
            self._table = self._reader.scan()
        return self._table

    def children(self) -> dict[int, list[int]]:
        if self._kids is None:
            self._kids = children_map(self.table())
        return self._kids


class Sampler:
    def __init__(self, reader: ProcReader | None = None) -> None:
        self.reader = reader or ProcReader()
        self._reported: set[str] = set()
        self.recogniser = Recogniser(self.reader)

    def sample(self, processes: Iterable[ProcessInfo], rules: Rules,
               now: float | None = None) -> SampleResult:
        """Each running process measured as its rule says (the rules in force this tick);
        `now` (epoch seconds) tells a young process, which recognition looks at again."""
        errors: Counter[str] = Counter()
        samples: dict[str, Sample] = {}
        running = [p for p in processes if p.pid > 0 and p.statename == RUNNING]
        tree = _Tree(self.reader)
        auto = {p.namespec for p in running
                if rules.strategy_for(p.group, p.name).children == "auto"}
        servers = self.recogniser.servers(running, time.time() if now is None else now,
                                          tree.children, auto)
        strategies = [rules.strategy_for(p.group, p.name).resolve(servers[p.namespec])
                      for p in running]
        table: dict[int, ProcStat] = {}
        kids: dict[int, list[int]] = {}
        if any(s.children != "none" for s in strategies):
            table, kids = tree.table(), tree.children()
        helpers = self.recogniser.helpers(
            (pid, table[pid].started) for p, s in zip(running, strategies, strict=True)
            if s.children == "each" for pid in descendants(p.pid, kids) if pid in table)
        for proc, strategy in zip(running, strategies, strict=True):
            units, measures, cpu = self._units(proc, strategy, table, kids, errors, helpers)
            if not units:
                continue
            if strategy.children == "sum":
                value = sum(u.bytes for u in units)
            elif strategy.children == "each":
                value = max(u.bytes for u in units)
            else:
                value = units[0].bytes
            samples[proc.namespec] = Sample(
                value=value,
                measure="rss" if "rss" in measures else strategy.measure,
                children=len(units) - 1,
                units=tuple(units) if strategy.children == "each" else (),
                server=servers[proc.namespec],
                tree=sum(u.bytes for u in units),
                cpu=cpu,
            )
        return SampleResult(samples, errors)

    def _units(self, proc: ProcessInfo, strategy: Strategy, table: dict[int, ProcStat],
               kids: dict[int, list[int]], errors: Counter[str], helpers: set[int]
               ) -> tuple[list[Unit], set[str], float]:
        """The supervised pid first (none if it cannot be trusted), then its descendants; and
        the CPU seconds of them all (the pid's own and its waited-for children's with `none`)."""
        measures: set[str] = set()
        measure = strategy.measure
        if strategy.children == "none":
            read = self._memory(proc.pid, measure, errors)
            # stat after the memory: if the pid was still ours then, it was ours before too
            root = self._stat(proc.pid, errors) if read else None
            if read is None or root is None or self._untrusted(proc, root, errors):
                return [], measures, 0.0
            measures.add(read[1])
            return [Unit(proc.pid, read[0], root.started)], measures, root.cpu
        root = table.get(proc.pid)
        if root is None:
            errors[VANISHED] += 1
            return [], measures, 0.0
        if self._untrusted(proc, root, errors):
            return [], measures, 0.0
        units: list[Unit] = []
        cpu = 0.0
        for pid in (proc.pid, *descendants(proc.pid, kids)):
            stat = table[pid]
            cpu += stat.cpu  # a zombie's too: its time moves to its parent only once reaped
            if stat.state == "Z":
                errors[ZOMBIE] += 1
                continue
            if pid in helpers:  # multiprocessing's resource tracker: never judged as a worker
                continue
            read = self._memory(pid, measure, errors)
            if read is None:
                if pid == proc.pid:  # the supervised pid itself is gone: no figure at all
                    return [], measures, 0.0
                continue
            measures.add(read[1])
            units.append(Unit(pid, read[0], stat.started))
        return units, measures, cpu

    def _untrusted(self, proc: ProcessInfo, stat: ProcStat, errors: Counter[str]) -> bool:
        problem = identity_problem(proc, stat)
        if problem is not None:
            errors[problem] += 1
        return problem is not None

    def _stat(self, pid: int, errors: Counter[str]) -> ProcStat | None:
        try:
            stat = self.reader.stat(pid)
        except OSError as exc:
            self._failed(pid, exc, errors)
            return None
        if stat is None:
            errors[VANISHED] += 1
        return stat

    def _memory(self, pid: int, measure: str, errors: Counter[str]) -> tuple[int, str] | None:
        """(bytes, measure used) of one pid; None, counted, when it cannot be read."""
        try:
            if measure != "rss":
                return self._full(pid, measure, errors)
            rss = self.reader.rss(pid)
        except OSError as exc:
            self._failed(pid, exc, errors)
            return None
        if rss is None:
            errors[VANISHED] += 1
            return None
        return rss, "rss"

    def _full(self, pid: int, measure: str, errors: Counter[str]) -> tuple[int, str] | None:
        try:
            process = psutil.Process(pid)
            try:
                return int(getattr(process.memory_full_info(), measure)), measure
            except psutil.AccessDenied:
                reason = f"{measure}_denied"
                errors[reason] += 1
                self._report_once(reason, f"{measure} of pid {pid} is not readable "
                                  "(permissions or kernel); using rss for such pids")
                rss = self.reader.rss(pid)
                if rss is not None:
                    return rss, "rss"
                errors[VANISHED] += 1
        except psutil.ZombieProcess:
            errors[ZOMBIE] += 1
        except psutil.NoSuchProcess:
            errors[VANISHED] += 1
        except psutil.AccessDenied:
            errors[ACCESS_DENIED] += 1
            self._report_once(ACCESS_DENIED, f"memory of pid {pid} is not readable (permissions)")
        return None

    def _failed(self, pid: int, exc: OSError, errors: Counter[str]) -> None:
        if isinstance(exc, PermissionError):
            errors[ACCESS_DENIED] += 1
            self._report_once(ACCESS_DENIED, f"memory of pid {pid} is not readable (permissions)")
        else:
            errors[UNREADABLE] += 1
            self._report_once(UNREADABLE, f"/proc of pid {pid} could not be read: "
                              f"{exc.strerror or exc}")

    def _report_once(self, reason: str, message: str) -> None:
        if reason not in self._reported:
            self._reported.add(reason)
            log.warning(message, extra={"fields": {"reason": reason}})
