"""`advise`: how many processes of each program this host can hold, and what limit each should
get, from observed memory and CPU. Pure: observations in, advice out (listener.tools.observe and
listener.tools.history gather the observations, listener.cli prints the result).

How the figures are derived:

- the limit guards what the rule judges: each worker for a pre-fork server (uWSGI, gunicorn,
  Celery) or a rule with children = each, else the whole process. It is HEADROOM above that
  figure's p99, and never less than MAX_HEADROOM above the largest figure observed, rounded up
  to a multiple of ROUND bytes: a normal peak never reaches it, a leak does;
- the processes the host can hold: the memory this program uses now plus what the host has
  available, less a SAFETY share of the host's memory kept free, over a process's p99 (with
  its workers); and no more than the CPUs left to it (the host's, less what every other program
  uses) over one process's mean CPU use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from listener.core.servers import Server, short_stop_wait
from listener.core.text import format_size
from listener.tools.table import table

HEADROOM = 1.3  # limit = p99 x 1.3 ...
MAX_HEADROOM = 1.1  # ... and at least the observed max x 1.1
ROUND = 16 * 1024**2
SAFETY = 0.10  # share of the host's memory never planned for
GUIDE_CONCURRENCY = 4  # Sentry's guide: more masters at -c 4 rather than one at -c 64
PREFORK = ("uwsgi", "gunicorn", "celery", "granian", "taskworker", "multiprocessing")


@dataclass(frozen=True)
class Host:
    memory_total: int
    memory_available: int
    cpus: int


@dataclass(frozen=True)
class Observed:
    """What was seen of one program (supervisord group) over the observation."""

    program: str
    kind: str  # uwsgi, gunicorn, celery, plain, unknown
    processes: int  # supervised processes of the program, running
    children_per_process: float
    # in `measure` (PSS when observed live; the listener's measure when read from Prometheus)
    worker_memory: Sequence[int]  # per child of a pre-fork master, every sample
    process_memory: Sequence[int]  # per supervised process with its tree, every sample
    cpu_cores: float  # mean CPU use of the whole program, in cores
    limit: int | None = None  # the rule's limit now, if one applies
    measure: str | None = None  # the rule's measure now
    # what the rule compares with its limit, `auto` resolved: none (the supervised pid alone),
    # sum (the tree) or each (every process); None: not known (Prometheus's series)
    judges: str | None = None
    own_memory: Sequence[int] = ()  # the supervised pid alone, every sample
    stop_wait: float | None = None  # supervisord's stopwaitsecs for it (the shortest of its)


@dataclass(frozen=True)
class Percentiles:
    p50: int
    p99: int
    max: int

    @classmethod
    def of(cls, values: Sequence[int]) -> Percentiles | None:
        if not values:
            return None
        ordered = sorted(values)
        return cls(_rank(ordered, 0.50), _rank(ordered, 0.99), ordered[-1])


def _rank(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile: a value that was really observed."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Advice:
    program: str
    processes: int
    kind: str
    children_per_process: float
    worker_memory: Percentiles | None
    process_memory: Percentiles | None
    cpu_cores: float
    recommended_limit: int | None
    recommended_processes: int | None
    advice: tuple[str, ...] = field(default=())


def advise(host: Host, programs: Sequence[Observed]) -> list[Advice]:
    total_cpu = sum(p.cpu_cores for p in programs)
    return [_one(host, p, total_cpu - p.cpu_cores) for p in programs]


def _one(host: Host, seen: Observed, others_cpu: float) -> Advice:
    workers = Percentiles.of(seen.worker_memory)
    processes = Percentiles.of(seen.process_memory)
    prefork = seen.kind in PREFORK and workers is not None
    # the figure a rule compares with its limit: each worker's, for a pre-fork server or a
    # rule that judges children on their own; else the process's
    per_worker = workers is not None and (prefork or seen.judges == "each")
    # a pre-fork server is advised per worker (and children = auto, below); any other process
    # whose rule judges the supervised pid alone gets a limit for that pid, not for its tree
    alone = not per_worker and seen.judges == "none" and bool(seen.own_memory)
    judged = Percentiles.of(seen.own_memory) if alone else workers if per_worker else processes
    limit = _limit(judged) if judged else None
    fit = _fit(host, seen, processes, others_cpu)
    said = []
    if seen.kind == "celery" and seen.children_per_process > GUIDE_CONCURRENCY:
        said.append(f"{seen.children_per_process:g} children per master: Sentry's guide advises "
                    f"more masters at -c {GUIDE_CONCURRENCY} rather than more children per master")
    if seen.limit is not None and judged is not None and seen.limit <= judged.p99:
        what = "a worker's" if per_worker else "a process's"
        said.append(f"the limit {format_size(seen.limit)} is below {what} normal peak (p99 "
                    f"{format_size(judged.p99)}): restarts will loop; raise it to "
                    f"{format_size(limit or 0)}")
    if seen.measure == "rss" and seen.children_per_process >= 1:
        said.append("RSS on a pre-fork tree counts the pages the master shares with its workers "
                    "once per worker: measure = pss")
    if seen.kind == "unrecognised tree" and seen.judges == "none":
        said.append("children = auto cannot tell what this program runs: the listener judges "
                    "each process alone, not its children; children = each (or sum)")
    elif prefork and seen.judges == "none":
        said.append("the rule judges the master alone, not its workers: children = auto")
    short = _short_stop_wait(seen)
    if short:
        said.append(short)
    if seen.limit is None:
        said.append(f"no rule covers this program: limit = {format_size(limit or 0)}")
    if fit is not None and fit < seen.processes:
        said.append(f"the host is over-committed for this program: it holds {fit} of its "
                    f"processes with {SAFETY:.0%} of memory kept free and the CPUs it has, and "
                    f"runs {seen.processes}")
    return Advice(seen.program, seen.processes, seen.kind, seen.children_per_process, workers,
                  processes, seen.cpu_cores, limit, fit, tuple(said))


def _short_stop_wait(seen: Observed) -> str | None:
    if seen.stop_wait is None or seen.kind not in {s.value for s in Server}:
        return None
    return short_stop_wait(Server(seen.kind), seen.stop_wait)


def _limit(judged: Percentiles) -> int:
    raw = max(judged.p99 * HEADROOM, judged.max * MAX_HEADROOM)
    return int(math.ceil(raw / ROUND) * ROUND)


def _fit(host: Host, seen: Observed, processes: Percentiles | None,
         others_cpu: float) -> int | None:
    if processes is None or processes.p99 <= 0 or seen.processes <= 0:
        return None
    in_use = sum(seen.process_memory) / len(seen.process_memory) * seen.processes
    budget = in_use + host.memory_available - SAFETY * host.memory_total
    by_memory = max(0, int(budget // processes.p99))
    per_process_cpu = seen.cpu_cores / seen.processes
    if per_process_cpu < 0.01:  # idle in the observation: CPU says nothing
        return by_memory
    by_cpu = max(0, int((host.cpus - others_cpu) // per_process_cpu))
    return min(by_memory, by_cpu)


def as_json(host: Host, advice: Sequence[Advice]) -> dict[str, Any]:
    def pct(p: Percentiles | None) -> dict[str, int] | None:
        return None if p is None else {"p50": p.p50, "p99": p.p99, "max": p.max}

    return {
        "host": {"memory_total_bytes": host.memory_total,
                 "memory_available_bytes": host.memory_available, "cpus": host.cpus},
        "programs": [{
            "program": a.program, "processes": a.processes, "kind": a.kind,
            "children_per_process": a.children_per_process,
            "worker_memory_bytes": pct(a.worker_memory),
            "process_memory_bytes": pct(a.process_memory),
            "cpu_cores": round(a.cpu_cores, 3),
            "recommended_limit_bytes": a.recommended_limit,
            "recommended_processes": a.recommended_processes,
            "advice": list(a.advice),
        } for a in advice],
    }


def render(host: Host, advice: Sequence[Advice]) -> str:
    """The table for people, then each program's advice as sentences."""
    def pct(p: Percentiles | None) -> str:
        return "-" if p is None else f"{format_size(p.p50)} / {format_size(p.p99)} / {format_size(p.max)}"

    rows = [("PROGRAM", "KIND", "PROCS", "CHILDREN", "WORKER p50/p99/max", "PROCESS p50/p99/max",
             "CPU", "LIMIT", "FITS")]
    for a in advice:
        rows.append((a.program, a.kind, str(a.processes), f"{a.children_per_process:g}",
                     pct(a.worker_memory), pct(a.process_memory), f"{a.cpu_cores:.2f}",
                     format_size(a.recommended_limit) if a.recommended_limit else "-",
                     "-" if a.recommended_processes is None else str(a.recommended_processes)))
    head = (f"host: {format_size(host.memory_total)} memory, {format_size(host.memory_available)} "
            f"available, {host.cpus} CPUs\n")
    notes = "".join(f"{a.program}: {line}\n" for a in advice for line in a.advice)
    legend = ("\nLIMIT: the limit to give each worker (pre-fork servers) or process: p99 x "
              f"{HEADROOM:g}, at least the max x {MAX_HEADROOM:g}. FITS: processes of the program "
              f"this host holds, {SAFETY:.0%} of memory kept free, within its CPUs.\n")
    return head + table(rows) + legend + ("\n" + notes if notes else "")
