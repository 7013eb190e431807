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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

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
from listener.host.figures import Figures, Key
from listener.host.measured import Measured
from listener.host.procfs import ProcReader, ProcStat, children_map, descendants
from listener.host.recognition import Configured, Recogniser

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
    def __init__(self, reader: ProcReader | None = None, pss_every_tick: bool = False,
                 configured: Configured | None = None,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        """`pss_every_tick`: every PSS/USS figure walked every tick, as advise measures (else
        only where a verdict depends on it, the rest at a bounded pace: host.figures).
        `configured`: supervisord's configured commands, which confirm a process that calls
        itself sentry-memwatch."""
        self.reader = reader or ProcReader()
        self._reported: set[str] = set()
        self.recogniser = Recogniser(self.reader, configured)
        self.figures = Figures(self._pss_uss, pss_every_tick)
        self._timer = timer
        # this tick's units shown with an earlier walk's figure: where a fresher one goes
        self._shown: dict[Key, list[tuple[Measured, int, str]]] = {}

    def sample(self, processes: Iterable[ProcessInfo], rules: Rules,
               now: float | None = None, pressure: bool = False) -> SampleResult:
        """Each running process measured as its rule says (the rules in force this tick);
        `now` (epoch seconds) tells a young process, which recognition looks at again.
        `pressure`: the host is under memory pressure, so a rule's pressure-limit is where
        PSS/USS starts to decide."""
        errors: Counter[str] = Counter()
        samples: dict[str, Sample] = {}
        running = [p for p in processes if p.pid > 0 and p.statename == RUNNING]
        tree = _Tree(self.reader)
        found_rules = [rules.rule_for(p.group, p.name) for p in running]  # once a process
        declared = [r.strategy if r else rules.strategy for r in found_rules]
        auto = {p.namespec for p, s in zip(running, declared, strict=True) if s.children == "auto"}
        servers = self.recogniser.servers(running, time.time() if now is None else now,
                                          tree.children, auto)
        strategies = [s.resolve(servers[p.namespec])
                      for p, s in zip(running, declared, strict=True)]
        table: dict[int, ProcStat] = {}
        kids: dict[int, list[int]] = {}
        if any(s.children != "none" for s in strategies):
            table, kids = tree.table(), tree.children()
        helpers = self.recogniser.helpers(
            (pid, table[pid].started) for p, s in zip(running, strategies, strict=True)
            if s.children == "each" for pid in descendants(p.pid, kids) if pid in table)
        # a forkserver's children are the pool's workers: forked from it, they show its
        # command line, but a helper's child is never a helper
        helpers = {pid for pid in helpers if table[pid].ppid not in helpers}
        self.figures.begin()
        self._shown, began = {}, self._timer()
        measured: list[tuple[ProcessInfo, Strategy, Measured]] = []
        for proc, strategy, rule in zip(running, strategies, found_rules, strict=True):
            limit = rule.limit if rule else None
            if limit is not None and pressure and strategy.pressure_limit is not None:
                limit = min(limit, strategy.pressure_limit)
            found = self._units(proc, strategy, limit, table, kids, errors, helpers)
            if found is not None:
                measured.append((proc, strategy, found))
        # the figures no verdict depends on, walked again in the time the RSS pass took
        rss_pass = self._timer() - began - self.figures.walked
        for key, (pss, uss) in self.figures.refresh(max(rss_pass, 0.0)).items():
            for found, index, measure in self._shown.get(key, ()):
                found.fresh(index, pss if measure == "pss" else uss)
        self.figures.end()
        samples = {proc.namespec: found.sample(strategy, servers[proc.namespec])
                   for proc, strategy, found in measured}
        return SampleResult(samples, errors)

    def _units(self, proc: ProcessInfo, strategy: Strategy, limit: int | None,
               table: dict[int, ProcStat], kids: dict[int, list[int]], errors: Counter[str],
               helpers: set[int]) -> Measured | None:
        """The supervised pid first (none if it cannot be trusted), then its descendants, each
        with its RSS, then PSS/USS where the rule measures it; and the CPU seconds of them all
        (the pid's own and its waited-for children's with `none`)."""
        if strategy.children == "none":
            rss = self._rss(proc.pid, errors)
            # keyed by supervisord's start until the kernel's is read (after the figures)
            alone = [Unit(proc.pid, rss, proc.start)] if rss is not None else []
            measured = self._finer(alone, strategy, limit, errors)
            # stat after the memory: if the pid was still ours then, it was ours before too
            root = self._stat(proc.pid, errors) if measured else None
            if measured is None or root is None or self._untrusted(proc, root, errors):
                return None
            measured.units = [replace(measured.units[0], started=root.started)]
            measured.cpu = root.cpu
            return measured
        root = table.get(proc.pid)
        if root is None:
            errors[VANISHED] += 1
            return None
        if self._untrusted(proc, root, errors):
            return None
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
            rss = self._rss(pid, errors)
            if rss is None:
                if pid == proc.pid:  # the supervised pid itself is gone: no figure at all
                    return None
                continue
            units.append(Unit(pid, rss, stat.started))
        measured = self._finer(units, strategy, limit, errors)
        if measured is not None:
            measured.cpu = cpu
        return measured

    def _finer(self, units: list[Unit], strategy: Strategy, limit: int | None,
               errors: Counter[str]) -> Measured | None:
        """The units with the rule's measure: RSS as read, or PSS/USS from the book (read now
        where the verdict depends on it). None when the supervised pid (first) has no figure."""
        if not units:
            return None
        if strategy.measure == "rss":
            return Measured(units, {"rss"}, [0.0] * len(units))
        over = limit is not None and strategy.children == "sum" and \
            sum(u.bytes for u in units) > limit
        done = Measured([], set(), [])
        for unit in units:
            deciding = over or (limit is not None and unit.bytes > limit)
            got = self._figure(unit, strategy.measure, deciding, errors)
            if got is None:
                if unit is units[0]:  # the supervised pid itself: no figure at all
                    return None
                continue
            value, age, measure = got
            if age > 0:
                self._shown.setdefault((unit.pid, unit.started), []).append(
                    (done, len(done.units), measure))
            done.units.append(replace(unit, bytes=value))
            done.ages.append(age)
            done.measures.add(measure)
        return done

    def _figure(self, unit: Unit, measure: str, deciding: bool,
                errors: Counter[str]) -> tuple[int, float, str] | None:
        """(bytes, age, measure used) of one unit's PSS/USS: its RSS where that is denied;
        None, counted, when it cannot be read."""
        try:
            got = self.figures.figure((unit.pid, unit.started), measure, unit.bytes, deciding)
        except PermissionError:
            reason = f"{measure}_denied"
            errors[reason] += 1
            self._report_once(reason, f"{measure} of pid {unit.pid} is not readable "
                              "(permissions or kernel); using rss for such pids")
            return unit.bytes, 0.0, "rss"
        except OSError as exc:
            self._failed(unit.pid, exc, errors)
            return None
        if got is None:
            errors[VANISHED] += 1
            return None
        return got[0], got[1], measure

    def _pss_uss(self, pid: int) -> tuple[int, int] | None:
        """One page-table walk (psutil reads smaps_rollup): as fast as our own parse of it,
        measured in bench/. None if the process is gone."""
        try:
            full = psutil.Process(pid).memory_full_info()
        except psutil.NoSuchProcess:  # a zombie too: it holds no memory
            return None
        except psutil.AccessDenied as exc:
            raise PermissionError(str(exc)) from exc
        return int(full.pss), int(full.uss)

    def _rss(self, pid: int, errors: Counter[str]) -> int | None:
        """RSS of one pid; None, counted, when it cannot be read."""
        try:
            rss = self.reader.rss(pid)
        except OSError as exc:
            self._failed(pid, exc, errors)
            return None
        if rss is None:
            errors[VANISHED] += 1
        return rss

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
