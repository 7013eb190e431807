"""How fast the listener may act, per tick: --max-parallel slots per group and the
--max-restarts budget per --restart-window. Pure, like the policy that asks them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from listener.core.model import ProcessInfo
from listener.core.rules import Strategy
from listener.core.states import TRANSITIONS


class Slots:
    """--max-parallel: a group member being restarted by us, or being (re)started or stopped by
    supervisord for any reason, takes a slot. FATAL, EXITED and STOPPED members do not: one that
    stays down would otherwise hold its group's restarts back for good."""

    def __init__(self, taken: dict[str, int]) -> None:
        self._taken = taken

    @classmethod
    def taken(cls, processes: Sequence[ProcessInfo], busy: frozenset[str]) -> Slots:
        on_the_way = {p.namespec for p in processes if p.statename in TRANSITIONS}
        taken: dict[str, int] = {}
        for namespec in busy | on_the_way:
            group = namespec.partition(":")[0]
            taken[group] = taken.get(group, 0) + 1
        return cls(taken)

    def take(self, group: str, max_parallel: int) -> bool:
        """A slot of the group for one more restart, if one is free."""
        if self._taken.get(group, 0) >= max_parallel:
            return False
        self._taken[group] = self._taken.get(group, 0) + 1
        return True


class Budget:
    """--max-restarts per --restart-window: the action times still in each window, and which
    processes have been warned about (once per exhaustion, not every tick)."""

    def __init__(self, history: dict[str, tuple[float, ...]], warned: frozenset[str],
                 strategies: Mapping[str, Strategy]) -> None:
        self.history = history
        self.warned = {n for n in warned
                       if n in strategies and not budget_left(history.get(n, ()), strategies[n])}
        self.newly_warned: list[str] = []

    def allows(self, namespec: str, strategy: Strategy) -> bool:
        if budget_left(self.history.get(namespec, ()), strategy):
            return True
        if namespec not in self.warned:
            self.warned.add(namespec)
            self.newly_warned.append(namespec)
        return False

    def spend(self, namespec: str, now: float) -> None:
        self.history[namespec] = self.history.get(namespec, ()) + (now,)


def prune(history: Mapping[str, tuple[float, ...]], now: float,
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


def budget_left(times: tuple[float, ...], strategy: Strategy) -> bool:
    return strategy.max_restarts == 0 or len(times) < strategy.max_restarts

