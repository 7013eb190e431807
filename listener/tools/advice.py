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

Each server's own knobs, where advise can give them a value:

- Granian restarts a worker itself when its RSS reaches `--workers-max-rss` (MiB; checked every
  30 s; `reload-on-rss` in SENTRY_WEB_OPTIONS for `sentry run web`). That stays the first line:
  it gets the headroom rule applied to the workers' RSS, memwatch's limit FIRST_LINE_ROOM times
  it at least (RSS is never below PSS: a worker over memwatch's limit is over Granian's too).
  Without the workers' RSS (Prometheus's series in PSS) no figure is given, only the rule;
- a taskworker (`--concurrency` children) gets the children one taskworker can run in the
  host's memory: its tree's p99 plus one child's p99 for each child more, the same budget as
  above. self-hosted's .env: higher values increase memory usage, more than
  SELF_HOSTED_MAX_CONCURRENCY is not recommended (the guide's "more masters at -c 4" for
  Celery, here more taskworker programs instead).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from listener.core.servers import Server, short_stop_wait
from listener.core.text import format_size

HEADROOM = 1.3  # limit = p99 x 1.3 ...
MAX_HEADROOM = 1.1  # ... and at least the observed max x 1.1
ROUND = 16 * 1024**2
SAFETY = 0.10  # share of the host's memory never planned for
GUIDE_CONCURRENCY = 4  # Sentry's guide: more masters at -c 4 rather than one at -c 64
PREFORK = ("uwsgi", "gunicorn", "celery", "granian", "taskworker", "multiprocessing")
MiB = 1024**2
FIRST_LINE_ROOM = 1.1  # memwatch's limit >= Granian's workers-max-rss x 1.1: Granian samples
# RSS every 30 s, so a growing worker passes its threshold by what it grows meanwhile
SELF_HOSTED_MAX_CONCURRENCY = 32  # getsentry/self-hosted .env: ">32 not recommended"


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
    worker_rss: Sequence[int] = ()  # per child, RSS, every sample (empty: not known)
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
    workers_max_rss_mib: int | None = None  # Granian's --workers-max-rss to give it
    concurrency_fits: int | None = None  # taskworker: --concurrency the host's memory holds


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
    rss = Percentiles.of(seen.worker_rss) if seen.kind == "granian" and per_worker else None
    first_line = _limit(rss) if rss is not None else None  # Granian's --workers-max-rss
    if limit is not None and first_line is not None:
        limit = max(limit, _rounded(first_line * FIRST_LINE_ROOM))
    fit = _fit(host, seen, processes, others_cpu)
    fits = (_concurrency(host, seen, processes, workers)
            if seen.kind == "taskworker" and prefork else None)
    said = _rules_said(seen, judged, limit, fit, per_worker, prefork)
    if seen.kind == "granian" and per_worker:
        said += _granian_said(seen, judged, limit, rss, first_line)
    if fits is not None and workers is not None:
        said += _taskworker_said(seen, workers, fits)
    return Advice(seen.program, seen.processes, seen.kind, seen.children_per_process, workers,
                  processes, seen.cpu_cores, limit, fit, tuple(said),
                  workers_max_rss_mib=None if first_line is None else first_line // MiB,
                  concurrency_fits=fits)


def _rules_said(seen: Observed, judged: Percentiles | None, limit: int | None, fit: int | None,
                per_worker: bool, prefork: bool) -> list[str]:
    """What the rule in force, the pre-fork shape and the host's room say, for any server."""
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
    return said


def _granian_said(seen: Observed, judged: Percentiles | None, limit: int | None,
                  rss: Percentiles | None, first_line: int | None) -> list[str]:
    """Granian's own --workers-max-rss as the first line, under memwatch's limit."""
    shown = format_size(limit or 0)
    if rss is None or first_line is None:
        return [f"Granian's own --workers-max-rss (RSS, in MiB) is the first line: set it under "
                f"the limit {shown} and above the workers' RSS peak, which these "
                f"{seen.measure or 'memory'} figures do not show (advise without --prometheus "
                "measures it)"]
    said = [f"Granian's own --workers-max-rss is the first line, under the limit {shown}: "
            f"workers-max-rss = {first_line // MiB} (MiB; reload-on-rss in SENTRY_WEB_OPTIONS "
            f"for sentry run web), above the workers' RSS (p99 {format_size(rss.p99)}, max "
            f"{format_size(rss.max)})"]
    in_force = seen.limit
    if (in_force is not None and judged is not None and in_force > judged.p99
            and in_force < first_line * FIRST_LINE_ROOM):
        said.append(f"the limit {format_size(in_force)} is not {FIRST_LINE_ROOM - 1:.0%} above "
                    f"workers-max-rss {first_line // MiB}: memwatch would act before Granian's "
                    f"own recycling; raise it to {shown}")
    return said


def _taskworker_said(seen: Observed, workers: Percentiles, fits: int) -> list[str]:
    """How many children (--concurrency) a taskworker can run in this host's memory."""
    running = seen.children_per_process
    said = [f"{running:g} children per taskworker, each up to {format_size(workers.p99)} (p99): "
            f"this host's memory holds --concurrency {fits} per taskworker with {SAFETY:.0%} "
            "kept free" + ("; lower it" if running > fits else "")
            + " (self-hosted: higher values increase memory usage; more than "
            f"{SELF_HOSTED_MAX_CONCURRENCY} not recommended)"]
    if running > SELF_HOSTED_MAX_CONCURRENCY:
        said.append(f"--concurrency {running:g}: more taskworker programs at lower --concurrency "
                    f"rather than one above {SELF_HOSTED_MAX_CONCURRENCY}")
    return said


def _short_stop_wait(seen: Observed) -> str | None:
    if seen.stop_wait is None or seen.kind not in {s.value for s in Server}:
        return None
    return short_stop_wait(Server(seen.kind), seen.stop_wait)


def _limit(judged: Percentiles) -> int:
    return _rounded(max(judged.p99 * HEADROOM, judged.max * MAX_HEADROOM))


def _rounded(raw: float) -> int:
    return int(math.ceil(raw / ROUND) * ROUND)


def _budget(host: Host, seen: Observed) -> float:
    """The memory this program may use: what it uses now plus what the host has available,
    less the share kept free."""
    in_use = sum(seen.process_memory) / len(seen.process_memory) * seen.processes
    return in_use + host.memory_available - SAFETY * host.memory_total


def _fit(host: Host, seen: Observed, processes: Percentiles | None,
         others_cpu: float) -> int | None:
    if processes is None or processes.p99 <= 0 or seen.processes <= 0:
        return None
    by_memory = max(0, int(_budget(host, seen) // processes.p99))
    per_process_cpu = seen.cpu_cores / seen.processes
    if per_process_cpu < 0.01:  # idle in the observation: CPU says nothing
        return by_memory
    by_cpu = max(0, int((host.cpus - others_cpu) // per_process_cpu))
    return min(by_memory, by_cpu)


def _concurrency(host: Host, seen: Observed, processes: Percentiles | None,
                 workers: Percentiles | None) -> int | None:
    """The children each process can run in the budget: its tree's p99 now, plus a child's p99
    for each child more (or less)."""
    if processes is None or workers is None or workers.p99 <= 0 or seen.processes <= 0:
        return None
    room = _budget(host, seen) / seen.processes - processes.p99
    return max(0, math.floor(seen.children_per_process + room / workers.p99))
