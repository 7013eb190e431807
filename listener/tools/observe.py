"""`advise`'s live mode: sample every supervised process for a while (PSS of each pid of its
tree, CPU time of the tree, from /proc in the same pass; the RSS of each worker too, which
Granian's own --workers-max-rss compares) and sum up what was seen per program (supervisord
group) as listener.tools.advice.Observed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from listener.core.model import ProcessInfo, Sample
from listener.core.rules import Rules
from listener.core.servers import Server
from listener.host.sampler import Sampler
from listener.supervisord.rpc import Supervisor
from listener.tools.advice import Host, Observed


@dataclass
class _Program:
    kind: str = Server.PLAIN.value
    workers: list[int] = field(default_factory=list)
    worker_rss: list[int] = field(default_factory=list)
    trees: list[int] = field(default_factory=list)
    own: list[int] = field(default_factory=list)  # the supervised pid alone
    children: list[int] = field(default_factory=list)
    cpu: float = 0.0  # CPU seconds used during the observation, all processes
    processes: set[str] = field(default_factory=set)  # seen on the last pass


@dataclass
class _Cpu:
    pid: int
    last: float


class Observation:
    """What the passes so far saw; `programs()` sums it up."""

    def __init__(self, rules: Rules, self_pid: int,
                 rss: Callable[[int], int | None] = lambda pid: None) -> None:
        self.rules = rules
        self.self_pid = self_pid
        self.rss = rss  # a pid's RSS (None: gone, or not read)
        self.by_program: dict[str, _Program] = {}
        self.cpu: dict[str, _Cpu] = {}
        self.representative: dict[str, ProcessInfo] = {}
        self.began: float | None = None
        self.ended: float | None = None
        self.passes = 0

    def add(self, processes: Sequence[ProcessInfo], samples: dict[str, Sample], now: float) -> None:
        self.began = now if self.began is None else self.began
        self.ended = now
        self.passes += 1
        seen: dict[str, set[str]] = {}
        for proc in processes:
            sample = samples.get(proc.namespec)
            if sample is None or sample.server is Server.MEMWATCH or proc.pid == self.self_pid:
                continue
            program = self.by_program.setdefault(proc.group, _Program())
            program.kind = sample.server.value
            program.workers += [u.bytes for u in sample.units[1:]]
            program.worker_rss += [r for u in sample.units[1:] if (r := self.rss(u.pid)) is not None]
            program.trees.append(sample.tree if sample.tree is not None else sample.value)
            program.own.append(sample.units[0].bytes if sample.units else sample.value)
            program.children.append(sample.children)
            seen.setdefault(proc.group, set()).add(proc.namespec)
            self.representative.setdefault(proc.group, proc)
            self._count_cpu(proc, sample, program)
        for group, program in self.by_program.items():
            program.processes = seen.get(group, set())

    def _count_cpu(self, proc: ProcessInfo, sample: Sample, program: _Program) -> None:
        """CPU used between passes; a restarted process starts a new count."""
        if sample.cpu is None:
            return
        before = self.cpu.get(proc.namespec)
        if before is not None and before.pid == proc.pid and sample.cpu >= before.last:
            program.cpu += sample.cpu - before.last
        self.cpu[proc.namespec] = _Cpu(proc.pid, sample.cpu)

    def programs(self) -> list[Observed]:
        elapsed = (self.ended or 0.0) - (self.began or 0.0)
        observed = []
        for group, program in sorted(self.by_program.items()):
            proc = self.representative[group]
            rule = self.rules.rule_for(proc.group, proc.name)
            server = Server(program.kind)
            observed.append(Observed(
                program=group, kind=program.kind, processes=len(program.processes),
                children_per_process=_median(program.children),
                worker_memory=program.workers, process_memory=program.trees,
                cpu_cores=program.cpu / elapsed if elapsed > 0 else 0.0,
                limit=rule.limit if rule else None,
                measure=rule.strategy.measure if rule else None,
                own_memory=program.own, worker_rss=program.worker_rss,
                judges=rule.strategy.resolve(server).children if rule else None))
        return observed


def _median(values: Sequence[int]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def observe_live(supervisor: Supervisor, rules: Rules, duration: float, interval: float,
                 progress: Callable[[float, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> list[Observed]:
    """Sample for `duration` seconds, a pass every `interval`, the first and last included.
    Raises the supervisor client's errors (the caller says them in one line)."""
    # each pid of each tree alone, its PSS read every sample: advise measures, it decides nothing
    sampler = Sampler(pss_every_tick=True, configured=supervisor.configured_commands)
    every_pid = Rules.uniform("pss", "each")
    observation = Observation(rules, os.getpid(), sampler.reader.rss)
    began = clock()
    while True:
        processes = supervisor.processes()
        observation.add(processes, sampler.sample(processes, every_pid).samples, clock())
        elapsed = clock() - began
        if progress is not None:
            progress(min(elapsed, duration), duration)
        if elapsed >= duration:
            return observation.programs()
        sleep(min(interval, duration - elapsed))


def read_host(proc_root: str = "/proc") -> Host:
    """This host's memory (/proc/meminfo) and the CPUs this process may run on."""
    info: dict[str, int] = {}
    with open(f"{proc_root}/meminfo", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if rest.split():
                info[key] = int(rest.split()[0]) * 1024
    return Host(info["MemTotal"], info["MemAvailable"], len(os.sched_getaffinity(0)))


def recognised_kinds(supervisor: Supervisor) -> dict[str, str]:
    """What each program runs (uwsgi, gunicorn, celery, plain), from one look at supervisord:
    Prometheus's series do not say it."""
    processes = supervisor.processes()
    sampler = Sampler(configured=supervisor.configured_commands)
    samples = sampler.sample(processes, Rules.uniform()).samples
    return {p.group: samples[p.namespec].server.value
            for p in processes if p.namespec in samples}
