"""The decision core: which processes to restart or signal this tick. Pure: no I/O, no clock.

Every rule lives here (limits, consecutive samples, grace, restart budget, rolling restarts,
child signals, exclusions) so it can be tested as tables of ticks with an injected `now`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from listener.config import Config
from listener.model import RUNNING, ProcessInfo, Sample, Unit

# Verdicts, as shown by `check` and the logs.
SELF = "self"
EXCLUDED = "excluded"
NOT_RUNNING = "not running"
BUSY = "restarting"
NO_LIMIT = "no limit"
NO_SAMPLE = "no sample"
OK = "ok"
GRACE = "grace"
COUNTING = "over (counting)"
ACT = "act"
SUPPRESSED = "suppressed"
DEFERRED = "deferred"

RESTART = "restart"
SIGNAL = "signal"


@dataclass(frozen=True)
class Action:
    kind: str  # RESTART or SIGNAL
    group: str
    name: str
    pid: int  # the supervised pid for a restart, the child's pid for a signal
    memory: int
    limit: int
    measure: str
    rule: str  # which limit applied, e.g. "group sentry-worker"
    uptime: float
    signal: int | None = None
    started: float = 0.0  # the target pid's start time, checked again before acting
    process_pid: int = 0  # the supervised pid (differs from pid for a child signal)

    @property
    def namespec(self) -> str:
        return f"{self.group}:{self.name}"


@dataclass(frozen=True)
class Judgement:
    """What the policy made of one process this tick (for metrics, logs and `check`)."""

    process: ProcessInfo
    sample: Sample | None
    limit: int | None
    rule: str
    over: bool  # the figure is above the limit right now
    over_samples: int  # consecutive samples over the limit (largest unit for `each`)
    verdict: str


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between ticks. Only keys seen this tick are kept."""

    # (namespec, pid) -> consecutive samples over the limit
    over_counts: Mapping[tuple[str, int], int] = field(default_factory=dict)
    # namespec -> times of the actions counted against the restart budget
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    # namespecs whose budget exhaustion has been reported (warn once, not every tick)
    warned: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    judgements: tuple[Judgement, ...]
    suppressed: tuple[Judgement, ...]  # actions withheld by the restart budget
    newly_suppressed: tuple[str, ...]  # namespecs to warn about now (once per exhaustion)
    state: PolicyState


def decide(
    processes: Sequence[ProcessInfo],
    samples: Mapping[str, Sample],
    config: Config,
    state: PolicyState,
    now: float,
    busy: frozenset[str] = frozenset(),
    self_names: frozenset[str] = frozenset(),
    self_pids: frozenset[int] = frozenset(),
) -> Decision:
    """Decide this tick's actions.

    samples: keyed by namespec. busy: namespecs with a restart in flight. self_names and
    self_pids identify the listener itself, which is never a target."""
    over_counts: dict[tuple[str, int], int] = {}
    history = _prune(state.history, now - config.restart_window)
    warned = {n for n in state.warned if not _budget_left(history.get(n, ()), config)}
    newly_warned: list[str] = []
    restarting_per_group: dict[str, int] = {}
    for namespec in busy:
        group = namespec.partition(":")[0]
        restarting_per_group[group] = restarting_per_group.get(group, 0) + 1

    actions: list[Action] = []
    judgements: list[Judgement] = []
    suppressed: list[Judgement] = []
    for proc in processes:
        namespec = proc.namespec
        sample = samples.get(namespec)
        found = config.limits.limit_for(proc.group, proc.name)
        limit, rule = found if found else (None, "")
        over = limit is not None and sample is not None and sample.value > limit

        def judged(verdict: str, count: int = 0, *, p: ProcessInfo = proc, s: Sample | None = sample,
                   lim: int | None = limit, r: str = rule, o: bool = over) -> Judgement:
            return Judgement(p, s, lim, r, o, count, verdict)

        if namespec in self_names or proc.pid in self_pids:
            judgements.append(judged(SELF))
            continue
        if config.excluded(proc.group, proc.name):
            judgements.append(judged(EXCLUDED))
            continue
        if proc.statename != RUNNING or proc.pid <= 0:
            judgements.append(judged(NOT_RUNNING))
            continue
        if namespec in busy:
            judgements.append(judged(BUSY))
            continue
        if limit is None:
            judgements.append(judged(NO_LIMIT))
            continue
        if sample is None:
            judgements.append(judged(NO_SAMPLE))
            continue

        # Count consecutive samples per unit; the worst unit over the limit is the candidate.
        units = _units(proc, sample, config)
        candidate: tuple[Unit, int] | None = None
        max_count = 0
        for unit in units:
            if unit.bytes <= limit:
                continue
            count = state.over_counts.get((namespec, unit.pid), 0) + 1
            over_counts[(namespec, unit.pid)] = count
            max_count = max(max_count, count)
            in_grace = now - unit.started < config.grace
            if count >= config.consecutive and not in_grace and (
                candidate is None or unit.bytes > candidate[0].bytes
            ):
                candidate = (unit, count)
        if candidate is None:
            in_grace = any(u.bytes > limit and now - u.started < config.grace for u in units)
            verdict = GRACE if in_grace else (COUNTING if max_count else OK)
            judgements.append(judged(verdict, max_count))
            continue

        unit, count = candidate
        if not _budget_left(history.get(namespec, ()), config):
            suppressed.append(judged(SUPPRESSED, count))
            judgements.append(suppressed[-1])
            if namespec not in warned:
                warned.add(namespec)
                newly_warned.append(namespec)
            continue

        signal_child = config.child_signal is not None and unit.pid != proc.pid
        if not signal_child:
            group_busy = restarting_per_group.get(proc.group, 0)
            if group_busy >= config.max_parallel:
                judgements.append(judged(DEFERRED, count))
                continue
            restarting_per_group[proc.group] = group_busy + 1

        actions.append(Action(
            kind=SIGNAL if signal_child else RESTART,
            group=proc.group,
            name=proc.name,
            pid=unit.pid if signal_child else proc.pid,
            memory=unit.bytes,
            limit=limit,
            measure=sample.measure,
            rule=rule,
            uptime=max(0.0, now - proc.start),
            signal=config.child_signal if signal_child else None,
            started=unit.started if signal_child else proc.start,
            process_pid=proc.pid,
        ))
        history[namespec] = history.get(namespec, ()) + (now,)
        del over_counts[(namespec, unit.pid)]  # acted on: a new run of samples starts
        judgements.append(judged(ACT, count))

    seen = {p.namespec for p in processes}
    return Decision(
        actions=tuple(actions),
        judgements=tuple(judgements),
        suppressed=tuple(suppressed),
        newly_suppressed=tuple(newly_warned),
        state=PolicyState(
            over_counts=over_counts,
            history={n: h for n, h in history.items() if n in seen},
            warned=frozenset(w for w in warned if w in seen),
        ),
    )


def _units(proc: ProcessInfo, sample: Sample, config: Config) -> tuple[Unit, ...]:
    """The pids judged on their own: every unit for `each`, else the whole figure as one."""
    if config.children == "each" and sample.units:
        return sample.units
    return (Unit(proc.pid, sample.value, proc.start),)


def _prune(history: Mapping[str, tuple[float, ...]], since: float) -> dict[str, tuple[float, ...]]:
    pruned = {}
    for namespec, times in history.items():
        kept = tuple(t for t in times if t > since)
        if kept:
            pruned[namespec] = kept
    return pruned


def _budget_left(times: tuple[float, ...], config: Config) -> bool:
    return config.max_restarts == 0 or len(times) < config.max_restarts
