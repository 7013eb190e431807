"""The decision core: which processes to restart or signal this tick. Pure: no I/O, no clock.

Every rule lives here (limits, consecutive samples, grace, restart budget, rolling restarts,
child signals, exclusions) so it can be tested as tables of ticks with an injected `now`.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from listener.core.model import (
    SAME_START,
    Action,
    ProcessInfo,
    Restart,
    Sample,
    SignalChild,
    Target,
    Unit,
)
from listener.core.pace import Budget, Slots, prune
from listener.core.rules import ROLLING_SECONDS_PER_WORKER, Rule, Rules, Strategy
from listener.core.servers import Server
from listener.core.states import RUNNING


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


# Verdicts of a process over its limit that the listener is dealing with, or will by its
# rules: a probe's normal transitions (`check` exits 0). Any other verdict of a process over
# its limit (suppressed by the budget, excluded...) is one nobody deals with (exit 1).
IN_HAND = frozenset({Verdict.GRACE, Verdict.COUNTING, Verdict.ACT, Verdict.DEFERRED,
                     Verdict.DRAINING, Verdict.BUSY})



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

    # (namespec, pid) -> (the pid's start time, consecutive samples over the limit): a process
    # respawned with the same pid starts a new run
    over_counts: Mapping[tuple[str, int], tuple[float, int]] = field(default_factory=dict)
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
    *,
    busy: frozenset[str] = frozenset(),
    self_names: frozenset[str] = frozenset(),
    self_pids: frozenset[int] = frozenset(),
) -> Decision:
    """Decide this tick's actions.

    samples: keyed by namespec. busy: namespecs with a restart in flight. self_names and
    self_pids identify the listener itself, which is never a target."""
    strategies = {p.namespec: rules.strategy_for(p.group, p.name) for p in processes}
    tick = Tick(state, now, Budget(prune(state.history, now, strategies), state.warned, strategies),
                 Slots.taken(processes, busy))
    for proc in processes:
        sample = samples.get(proc.namespec)
        rule = rules.rule_for(proc.group, proc.name)
        over = rule is not None and sample is not None and sample.value > rule.limit
        judged = functools.partial(Judgement, proc, sample, rule, over)  # (verdict, over_samples)
        screened = screen(proc, sample, rule, rules, busy, self_names, self_pids)
        if screened is not None:
            tick.judgements.append(judged(screened))
        else:
            assert rule is not None and sample is not None  # screen() says NO_LIMIT, NO_SAMPLE
            judgement = judged(*tick.judge(proc, sample, rule))
            tick.judgements.append(judgement)
            if judgement.verdict is Verdict.SUPPRESSED:
                tick.suppressed.append(judgement)
    return tick.decision(strategies)


def screen(proc: ProcessInfo, sample: Sample | None, rule: Rule | None, rules: Rules,
           busy: frozenset[str], self_names: frozenset[str], self_pids: frozenset[int]
           ) -> Verdict | None:
    """The verdict of a process the policy does not weigh at all; None for one it does."""
    if proc.namespec in self_names or proc.pid in self_pids:
        return Verdict.SELF
    if sample is not None and sample.server is Server.MEMWATCH:
        return Verdict.LISTENER
    if rules.excluded(proc.group, proc.name):
        return Verdict.EXCLUDED
    if proc.statename != RUNNING or proc.pid <= 0:
        return Verdict.STOPPED
    if proc.namespec in busy:
        return Verdict.BUSY
    if rule is None:
        return Verdict.NO_LIMIT
    if sample is None:
        return Verdict.NO_SAMPLE
    return None


@dataclass
class Units:
    """One process's units this tick: counted over the limit, signalled before, the candidate."""

    candidate: tuple[Unit, int] | None = None  # the worst unit due for an action, its count
    max_count: int = 0  # the longest run of samples over the limit among the units
    draining: list[tuple[Unit, float]] = field(default_factory=list)  # (unit, signalled at)


class Tick:
    """What one decide() call builds up, process by process (local to the call: no globals)."""

    def __init__(self, state: PolicyState, now: float, budget: Budget, slots: Slots) -> None:
        self.state, self.now, self.budget, self.slots = state, now, budget, slots
        self.over_counts: dict[tuple[str, int], tuple[float, int]] = {}
        # re-made for the processes whose units are looked into this tick; carried for the
        # others (busy, no sample) while they are listed
        self.signalled: dict[tuple[str, int], tuple[float, float]] = {}
        self.examined: set[str] = set()
        self.actions: list[Action] = []
        self.judgements: list[Judgement] = []
        self.suppressed: list[Judgement] = []

    def judge(self, proc: ProcessInfo, sample: Sample, rule: Rule) -> tuple[Verdict, int]:
        """The verdict of a process the policy weighs, and its samples over the limit; the
        action it takes, if any, is added to the tick's."""
        strategy = rule.strategy.resolve(sample.server)
        units = self.count(proc, sample, rule, strategy)
        if units.candidate is None:
            return self.without_candidate(proc, sample, rule, strategy, units), units.max_count
        unit, count = units.candidate
        if not self.budget.allows(proc.namespec, strategy):
            return Verdict.SUPPRESSED, count
        target = Target(proc.group, proc.name, proc.pid, unit.bytes, rule.limit, sample.measure,
                        rule.target, by=unit.pid if unit.pid != proc.pid else 0)
        if strategy.child_signal is not None and unit.pid != proc.pid:
            if strategy.signals_master and units.draining:
                return Verdict.DRAINING, count  # one roll at a time: never signal it twice
            otherwise = None
            if strategy.if_caught and self.slots.take(proc.group, strategy.max_parallel):
                otherwise = Restart(target, uptime=max(0.0, self.now - proc.start))
            self.actions.append(SignalChild(target, unit.pid, unit.started, strategy.child_signal,
                                            to_master=strategy.signals_master,
                                            if_caught=strategy.if_caught, otherwise=otherwise))
            self.signalled[(proc.namespec, unit.pid)] = (unit.started, self.now)
        elif self.slots.take(proc.group, strategy.max_parallel):
            self.actions.append(Restart(target, uptime=max(0.0, self.now - proc.start)))
        else:
            return Verdict.DEFERRED, count
        self.budget.spend(proc.namespec, self.now)
        del self.over_counts[(proc.namespec, unit.pid)]  # acted on: a new run of samples starts
        return Verdict.ACT, count

    def count(self, proc: ProcessInfo, sample: Sample, rule: Rule, strategy: Strategy) -> Units:
        """Count consecutive samples per unit; the worst unit over the limit is the candidate.
        A child signalled before (same pid and start time) is draining: never a candidate."""
        self.examined.add(proc.namespec)
        found = Units()
        for unit in _units(proc, sample, strategy):
            key = (proc.namespec, unit.pid)
            mark = self.state.signalled.get(key)
            if mark is not None and abs(mark[0] - unit.started) < SAME_START:
                self.signalled[key] = mark
                found.draining.append((unit, mark[1]))
                continue
            if unit.bytes <= rule.limit:
                continue
            before = self.state.over_counts.get(key)
            same = before is not None and abs(before[0] - unit.started) < SAME_START
            count = before[1] + 1 if before is not None and same else 1
            self.over_counts[key] = (unit.started, count)
            found.max_count = max(found.max_count, count)
            in_grace = self.now - unit.started < strategy.grace
            if count >= strategy.consecutive and not in_grace and (
                    found.candidate is None or unit.bytes > found.candidate[0].bytes):
                found.candidate = (unit, count)
        return found

    def without_candidate(self, proc: ProcessInfo, sample: Sample, rule: Rule,
                          strategy: Strategy, units: Units) -> Verdict:
        """No unit is due: escalate a signalled child that outlived its timeout (once: the
        program, through supervisord), else say why nothing happens."""
        timeout = strategy.child_signal_timeout
        if strategy.signals_master:  # the worker is replaced in its turn of the master's roll
            timeout += ROLLING_SECONDS_PER_WORKER * len(_units(proc, sample, strategy))
        overdue = [u for u, sent in units.draining if self.now - sent >= timeout]
        if overdue:
            if not self.slots.take(proc.group, strategy.max_parallel):
                return Verdict.DEFERRED
            worst = max(overdue, key=lambda u: u.bytes)
            target = Target(proc.group, proc.name, proc.pid, worst.bytes, rule.limit,
                            sample.measure, rule.target, by=worst.pid)
            self.actions.append(Restart(target, uptime=max(0.0, self.now - proc.start),
                                        escalates=worst.pid))
            return Verdict.ACT
        in_grace = any(u.bytes > rule.limit and self.now - u.started < strategy.grace
                       for u in _units(proc, sample, strategy))
        if in_grace:
            return Verdict.GRACE
        if units.max_count:
            return Verdict.COUNTING
        return Verdict.DRAINING if units.draining else Verdict.OK

    def decision(self, strategies: Mapping[str, Strategy]) -> Decision:
        """The actions, judgements and the state to carry: only processes listed this tick."""
        state = self.state
        carried = {k: v for k, v in state.signalled.items()
                   if k[0] in strategies and k[0] not in self.examined}
        return Decision(
            actions=tuple(self.actions),
            judgements=tuple(self.judgements),
            suppressed=tuple(self.suppressed),
            newly_suppressed=tuple(self.budget.newly_warned),
            state=PolicyState(
                over_counts=self.over_counts,
                history={n: h for n, h in self.budget.history.items() if n in strategies},
                warned=frozenset(w for w in self.budget.warned if w in strategies),
                signalled={**carried, **self.signalled},
            ),
        )


def _units(proc: ProcessInfo, sample: Sample, strategy: Strategy) -> tuple[Unit, ...]:
    """The pids judged on their own: every unit for `each`, else the whole figure as one."""
    if strategy.children == "each" and sample.units:
        return sample.units
    return (Unit(proc.pid, sample.value, proc.start),)
