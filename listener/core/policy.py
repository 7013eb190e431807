"""The decision core: which processes to restart or signal this tick. Pure: no I/O, no clock.

Every rule lives here (limits, consecutive samples, grace, restart budget, rolling restarts,
child signals, exclusions, host memory pressure) so it can be tested as tables of ticks with an
injected `now`. What it produces (verdicts, judgements, its state) is in core.judgements.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from listener.core.judgements import IN_HAND, Decision, Judgement, PolicyState, Verdict
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
from listener.core.pressure import RELIEF_INTERVAL
from listener.core.rules import ROLLING_SECONDS_PER_WORKER, Rule, Rules, Strategy
from listener.core.servers import Server
from listener.core.states import RUNNING

__all__ = ["IN_HAND", "Decision", "Judgement", "PolicyState", "Verdict", "decide", "screen"]


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
    pressure: bool = False,
) -> Decision:
    """Decide this tick's actions.

    samples: keyed by namespec. busy: namespecs with a restart in flight. self_names and
    self_pids identify the listener itself, which is never a target. pressure: the host is
    under memory pressure (listener.core.pressure): pressure limits apply."""
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
    if pressure:
        tick.relieve(busy)
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
    if proc.namespec in busy:  # ours to restart: stopping, stopped or starting, it is restarting
        return Verdict.BUSY
    if proc.statename != RUNNING or proc.pid <= 0:
        return Verdict.STOPPED
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
        self.relieving = state.relieving

    def judge(self, proc: ProcessInfo, sample: Sample, rule: Rule) -> tuple[Verdict, int]:
        """The verdict of a process the policy weighs, and its samples over the limit; the
        action it takes, if any, is added to the tick's."""
        strategy = rule.strategy.resolve(sample.server)
        units = self.count(proc, sample, rule, strategy)
        if units.candidate is None:
            return self.without_candidate(proc, sample, rule, strategy, units), units.max_count
        unit, count = units.candidate
        return self.act(proc, sample, rule, strategy, unit, bool(units.draining)), count

    def act(self, proc: ProcessInfo, sample: Sample, rule: Rule, strategy: Strategy, unit: Unit,
            draining: bool) -> Verdict:
        """Act on the unit over the rule's limit: signal it or restart the program, as the
        strategy says, if the budget and the group's slots allow."""
        if not self.budget.allows(proc.namespec, strategy):
            return Verdict.SUPPRESSED
        target = Target(proc.group, proc.name, proc.pid, unit.bytes, rule.limit, sample.measure,
                        rule.target, by=unit.pid if unit.pid != proc.pid else 0)
        if strategy.child_signal is not None and unit.pid != proc.pid:
            if strategy.signals_master and draining:
                return Verdict.DRAINING  # one roll at a time: never signal it twice
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
            return Verdict.DEFERRED
        self.budget.spend(proc.namespec, self.now)
        self.over_counts.pop((proc.namespec, unit.pid), None)  # a new run of samples starts
        return Verdict.ACT

    def relieve(self, busy: frozenset[str]) -> None:
        """Under host memory pressure: act on the one unit furthest over its rule's
        pressure-limit, if the last such action is done and a minute old (one at a time per
        host). Only processes judged ok or counting this tick are candidates."""
        last, at = self.state.relieving  # self.relieving stays that unless this tick acts
        if last in busy or any(key[0] == last for key in self.signalled) or \
                self.now - at < RELIEF_INTERVAL:
            return
        best: tuple[int, int, Unit, Strategy, int] | None = None
        for i, j in enumerate(self.judgements):
            strategy = j.strategy
            if j.verdict not in (Verdict.OK, Verdict.COUNTING) or j.sample is None or \
                    strategy is None or strategy.pressure_limit is None:
                continue
            for unit in _units(j.process, j.sample, strategy):
                over = unit.bytes - strategy.pressure_limit
                if over > 0 and (best is None or over > best[0]) and \
                        (j.process.namespec, unit.pid) not in self.signalled:
                    best = (over, i, unit, strategy, strategy.pressure_limit)
        if best is None:
            return
        _, i, unit, strategy, limit = best
        j = self.judgements[i]
        assert j.rule is not None and j.sample is not None
        pressed = Rule(f"{j.rule.target}, under host memory pressure", limit, j.rule.strategy)
        if self.act(j.process, j.sample, pressed, strategy, unit, draining=False) is Verdict.ACT:
            self.judgements[i] = dataclasses.replace(j, verdict=Verdict.ACT)
            self.relieving = (j.process.namespec, self.now)

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
                relieving=self.relieving,
            ),
        )


def _units(proc: ProcessInfo, sample: Sample, strategy: Strategy) -> tuple[Unit, ...]:
    """The pids judged on their own: every unit for `each`, else the whole figure as one."""
    if strategy.children == "each" and sample.units:
        return sample.units
    return (Unit(proc.pid, sample.value, proc.start),)
