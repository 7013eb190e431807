"""The decision core: which processes to restart or signal this tick. Pure: no I/O, no clock.

Every rule lives here (limits, consecutive samples, grace, restart budget, rolling restarts,
child signals, exclusions) so it can be tested as tables of ticks with an injected `now`.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from listener.core.model import RUNNING, Action, ProcessInfo, Restart, Sample, SignalChild, Target, Unit
from listener.core.rules import Rule, Rules, Strategy
from listener.core.servers import Server


class Verdict(str, enum.Enum):
    """What the policy made of a process, as `check` and the logs say it."""

    SELF = "self"
    LISTENER = "memwatch listener"  # another sentry-memwatch: never judged, like the listener itself
    EXCLUDED = "excluded"
    STOPPED = "not running"
    BUSY = "restarting"
    NO_LIMIT = "no limit"
    NO_SAMPLE = "no sample"
    OK = "ok"
    GRACE = "grace"
    COUNTING = "over (counting)"
    ACT = "act"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    DRAINING = "draining"  # a signalled child is finishing its work; not signalled again

    def __str__(self) -> str:
        return self.value


TRANSITIONS = frozenset({"STARTING", "BACKOFF", "STOPPING"})
SAME_START = 0.05  # seconds: start times this close are the same process (same /proc source)


@dataclass(frozen=True)
class Judgement:
    """What the policy made of one process this tick (for metrics, logs and `check`)."""

    process: ProcessInfo
    sample: Sample | None
    rule: Rule | None  # the rule that applies; None: no limit
    over: bool  # the figure is above the limit right now
    verdict: Verdict
    over_samples: int = 0  # consecutive samples over the limit (largest unit for `each`)

    @property
    def limit(self) -> int | None:
        return self.rule.limit if self.rule else None

    @property
    def strategy(self) -> Strategy | None:
        """The rule's strategy as applied to this process (`auto` resolved by its server)."""
        if self.rule is None:
            return None
        return self.rule.strategy.resolve(self.sample.server if self.sample else Server.PLAIN)


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between ticks. Only keys seen this tick are kept."""

    # (namespec, pid) -> consecutive samples over the limit
    over_counts: Mapping[tuple[str, int], int] = field(default_factory=dict)
    # namespec -> times of the actions counted against the restart budget
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    # namespecs whose budget exhaustion has been reported (warn once, not every tick)
    warned: frozenset[str] = frozenset()
    # (namespec, child pid) -> (the child's start time, when it was signalled): a signalled
    # child is never signalled again, and is escalated once if it outlives its timeout
    signalled: Mapping[tuple[str, int], tuple[float, float]] = field(default_factory=dict)


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
    rules: Rules,
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
    strategies = {p.namespec: rules.strategy_for(p.group, p.name) for p in processes}
    # re-made for the processes whose units are looked into this tick; carried for the others
    # (busy, no sample) while they are listed
    signalled: dict[tuple[str, int], tuple[float, float]] = {}
    examined: set[str] = set()
    history = _prune(state.history, now, strategies)
    warned = {n for n in state.warned
              if n in strategies and not _budget_left(history.get(n, ()), strategies[n])}
    newly_warned: list[str] = []
    # --max-parallel keeps capacity: a group member being restarted by us, or being (re)started
    # or stopped by supervisord for any reason, takes a slot. FATAL, EXITED and STOPPED members
    # do not: one that stays down would otherwise hold its group's restarts back for good.
    restarting_per_group: dict[str, int] = {}
    on_the_way = {p.namespec for p in processes if p.statename in TRANSITIONS}
    for namespec in busy | on_the_way:
        group = namespec.partition(":")[0]
        restarting_per_group[group] = restarting_per_group.get(group, 0) + 1

    actions: list[Action] = []
    judgements: list[Judgement] = []
    suppressed: list[Judgement] = []
    for proc in processes:
        namespec = proc.namespec
        sample = samples.get(namespec)
        rule = rules.rule_for(proc.group, proc.name)
        over = rule is not None and sample is not None and sample.value > rule.limit
        judged = functools.partial(Judgement, proc, sample, rule, over)  # (verdict, over_samples)

        if namespec in self_names or proc.pid in self_pids:
            judgements.append(judged(Verdict.SELF))
            continue
        if sample is not None and sample.server is Server.MEMWATCH:
            judgements.append(judged(Verdict.LISTENER))
            continue
        if rules.excluded(proc.group, proc.name):
            judgements.append(judged(Verdict.EXCLUDED))
            continue
        if proc.statename != RUNNING or proc.pid <= 0:
            judgements.append(judged(Verdict.STOPPED))
            continue
        if namespec in busy:
            judgements.append(judged(Verdict.BUSY))
            continue
        if rule is None:
            judgements.append(judged(Verdict.NO_LIMIT))
            continue
        if sample is None:
            judgements.append(judged(Verdict.NO_SAMPLE))
            continue
        strategy = rule.strategy.resolve(sample.server)

        # Count consecutive samples per unit; the worst unit over the limit is the candidate.
        # A child signalled before (same pid and start time) is draining: never a candidate.
        units = _units(proc, sample, strategy)
        examined.add(namespec)
        draining: list[tuple[Unit, float]] = []
        candidate: tuple[Unit, int] | None = None
        max_count = 0
        for unit in units:
            mark = state.signalled.get((namespec, unit.pid))
            if mark is not None and abs(mark[0] - unit.started) < SAME_START:
                signalled[(namespec, unit.pid)] = mark
                draining.append((unit, mark[1]))
                continue
            if unit.bytes <= rule.limit:
                continue
            count = state.over_counts.get((namespec, unit.pid), 0) + 1
            over_counts[(namespec, unit.pid)] = count
            max_count = max(max_count, count)
            in_grace = now - unit.started < strategy.grace
            if count >= strategy.consecutive and not in_grace and (
                candidate is None or unit.bytes > candidate[0].bytes
            ):
                candidate = (unit, count)
        overdue = [u for u, sent in draining if now - sent >= strategy.child_signal_timeout]
        if candidate is None and overdue:  # escalate once: the program, through supervisord
            worst = max(overdue, key=lambda u: u.bytes)
            group_busy = restarting_per_group.get(proc.group, 0)
            if group_busy >= strategy.max_parallel:
                judgements.append(judged(Verdict.DEFERRED, max_count))
                continue
            restarting_per_group[proc.group] = group_busy + 1
            target = Target(proc.group, proc.name, proc.pid, worst.bytes, rule.limit,
                            sample.measure, rule.target, by=worst.pid)
            actions.append(Restart(target, uptime=max(0.0, now - proc.start), escalates=worst.pid))
            judgements.append(judged(Verdict.ACT, max_count))
            continue
        if candidate is None:
            in_grace = any(u.bytes > rule.limit and now - u.started < strategy.grace for u in units)
            verdict = Verdict.GRACE if in_grace else (Verdict.COUNTING if max_count else Verdict.OK)
            if draining and verdict is Verdict.OK:
                verdict = Verdict.DRAINING
            judgements.append(judged(verdict, max_count))
            continue

        unit, count = candidate
        if not _budget_left(history.get(namespec, ()), strategy):
            suppressed.append(judged(Verdict.SUPPRESSED, count))
            judgements.append(suppressed[-1])
            if namespec not in warned:
                warned.add(namespec)
                newly_warned.append(namespec)
            continue

        target = Target(proc.group, proc.name, proc.pid, unit.bytes, rule.limit, sample.measure,
                        rule.target, by=unit.pid if unit.pid != proc.pid else 0)
        if strategy.child_signal is not None and unit.pid != proc.pid:
            actions.append(SignalChild(target, unit.pid, unit.started, strategy.child_signal))
            signalled[(namespec, unit.pid)] = (unit.started, now)
        else:
            group_busy = restarting_per_group.get(proc.group, 0)
            if group_busy >= strategy.max_parallel:
                judgements.append(judged(Verdict.DEFERRED, count))
                continue
            restarting_per_group[proc.group] = group_busy + 1
            actions.append(Restart(target, uptime=max(0.0, now - proc.start)))
        history[namespec] = history.get(namespec, ()) + (now,)
        del over_counts[(namespec, unit.pid)]  # acted on: a new run of samples starts
        judgements.append(judged(Verdict.ACT, count))

    return Decision(
        actions=tuple(actions),
        judgements=tuple(judgements),
        suppressed=tuple(suppressed),
        newly_suppressed=tuple(newly_warned),
        state=PolicyState(
            over_counts=over_counts,
            history={n: h for n, h in history.items() if n in strategies},
            warned=frozenset(w for w in warned if w in strategies),
            signalled={**{k: v for k, v in state.signalled.items()
                          if k[0] in strategies and k[0] not in examined}, **signalled},
        ),
    )


def _units(proc: ProcessInfo, sample: Sample, strategy: Strategy) -> tuple[Unit, ...]:
    """The pids judged on their own: every unit for `each`, else the whole figure as one."""
    if strategy.children == "each" and sample.units:
        return sample.units
    return (Unit(proc.pid, sample.value, proc.start),)


def _prune(history: Mapping[str, tuple[float, ...]], now: float,
           strategies: Mapping[str, Strategy]) -> dict[str, tuple[float, ...]]:
    """Keep the action times still inside each listed process's restart window."""
    pruned = {}
    for namespec, times in history.items():
        strategy = strategies.get(namespec)
        if strategy is None:
            continue
        kept = tuple(t for t in times if t > now - strategy.restart_window)
        if kept:
            pruned[namespec] = kept
    return pruned


def _budget_left(times: tuple[float, ...], strategy: Strategy) -> bool:
    return strategy.max_restarts == 0 or len(times) < strategy.max_restarts

