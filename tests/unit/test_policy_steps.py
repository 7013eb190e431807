"""The steps decide() is made of, each on its own: which processes are weighed at all (screen),
--max-parallel slots (Slots), the restart budget (Budget) and the per-unit count (a tick's
`count`). tests/unit/test_policy.py holds the whole of decide() to its tables of ticks."""

from __future__ import annotations

import pytest

from listener.core.model import ProcessInfo, Sample, Unit
from listener.core.policy import Budget, PolicyState, Slots, Tick, Verdict, screen
from listener.core.rules import Rule, Rules, Strategy
from listener.core.servers import Server

MiB = 1024**2
RULES = Rules(any=100 * MiB, exclude=("cron:*",))
RULE = Rule("any", 100 * MiB, Strategy())
SAMPLE = Sample(50 * MiB, "rss", 0, ())


def proc(namespec: str, pid: int = 10, state: str = "RUNNING") -> ProcessInfo:
    group, _, name = namespec.partition(":")
    return ProcessInfo(group, name, pid, state, 0.0)


@pytest.mark.parametrize(("process", "sample", "rule", "verdict"), [
    (proc("memwatch:memwatch"), SAMPLE, RULE, Verdict.SELF),  # by name
    (proc("web:web", pid=4242), SAMPLE, RULE, Verdict.SELF),  # by pid
    (proc("other:mw"), Sample(1, "rss", 0, (), server=Server.MEMWATCH), RULE, Verdict.LISTENER),
    (proc("cron:nightly"), SAMPLE, RULE, Verdict.EXCLUDED),
    (proc("web:web", state="STARTING"), SAMPLE, RULE, Verdict.STOPPED),
    (proc("web:web", pid=0), SAMPLE, RULE, Verdict.STOPPED),
    (proc("web:busy"), SAMPLE, RULE, Verdict.BUSY),
    # our own restart: supervisord's state says stopping, stopped or starting meanwhile
    (proc("web:busy", state="STOPPING"), SAMPLE, RULE, Verdict.BUSY),
    (proc("web:busy", pid=0, state="STOPPED"), None, RULE, Verdict.BUSY),
    (proc("web:busy", state="STARTING"), None, RULE, Verdict.BUSY),
    (proc("web:web"), SAMPLE, None, Verdict.NO_LIMIT),
    (proc("web:web"), None, RULE, Verdict.NO_SAMPLE),
    (proc("web:web"), SAMPLE, RULE, None),  # weighed by the policy
])
def test_screen_says_which_processes_are_not_weighed_and_why(
        process: ProcessInfo, sample: Sample | None, rule: Rule | None,
        verdict: Verdict | None) -> None:
    said = screen(process, sample, rule, RULES, busy=frozenset({"web:busy"}),
                  self_names=frozenset({"memwatch:memwatch"}), self_pids=frozenset({4242}))
    assert said is verdict


@pytest.mark.parametrize(("states", "busy", "max_parallel", "free"), [
    ({}, set(), 1, True),
    ({"w:a": "STARTING"}, set(), 1, False),  # supervisord starting a member takes the slot
    ({"w:a": "BACKOFF"}, set(), 2, True),
    ({"w:a": "STOPPING", "w:b": "BACKOFF"}, set(), 2, False),
    ({"w:a": "FATAL", "w:b": "EXITED", "w:c": "STOPPED"}, set(), 1, True),  # down: no slot
    ({}, {"w:a"}, 1, False),  # our own restart in flight
    ({"other:a": "STARTING"}, set(), 1, True),  # another group's
])
def test_a_slot_is_free_while_fewer_members_than_max_parallel_are_on_the_way(
        states: dict[str, str], busy: set[str], max_parallel: int, free: bool) -> None:
    slots = Slots.taken([proc(n, state=s) for n, s in states.items()], frozenset(busy))
    assert slots.take("w", max_parallel) is free


def test_a_slot_taken_is_taken_for_the_rest_of_the_tick() -> None:
    slots = Slots.taken([], frozenset())
    assert slots.take("w", 2) and slots.take("w", 2)
    assert not slots.take("w", 2)
    assert slots.take("other", 1)


def test_the_budget_allows_max_restarts_per_window_and_warns_once() -> None:
    strategy = Strategy(max_restarts=2)
    budget = Budget({}, frozenset(), {"w:a": strategy})
    for now in (1.0, 2.0):
        assert budget.allows("w:a", strategy)
        budget.spend("w:a", now)
    assert not budget.allows("w:a", strategy)
    assert not budget.allows("w:a", strategy)
    assert budget.newly_warned == ["w:a"]  # said once, not on every refusal


def test_no_budget_means_no_limit() -> None:
    strategy = Strategy(max_restarts=0)
    budget = Budget({"w:a": tuple(float(t) for t in range(100))}, frozenset(), {"w:a": strategy})
    assert budget.allows("w:a", strategy)


def test_a_warning_is_kept_only_while_the_budget_stays_used_up() -> None:
    strategy = Strategy(max_restarts=1)
    still_out = Budget({"w:a": (5.0,)}, frozenset({"w:a", "w:b"}), {"w:a": strategy, "w:b": strategy})
    assert still_out.warned == {"w:a"}  # w:b has its budget back: warn again when it runs out


@pytest.mark.parametrize(("sizes", "before", "consecutive", "candidate", "max_count"), [
    ([150, 50], {}, 1, 11, 1),
    ([150, 200], {}, 1, 12, 1),  # the worst unit over the limit
    ([150, 200], {11: 2}, 3, 11, 3),  # the one whose run reached --consecutive
    ([150, 200], {}, 2, None, 1),  # counting
    ([50, 60], {11: 4}, 1, None, 0),  # under the limit: the run ends
])
def test_count_finds_the_unit_due_for_an_action(
        sizes: list[int], before: dict[int, int], consecutive: int, candidate: int | None,
        max_count: int) -> None:
    units = tuple(Unit(11 + i, size * MiB, 0.0) for i, size in enumerate(sizes))
    state = PolicyState(over_counts={("w:a", pid): (0.0, n) for pid, n in before.items()})
    strategy = Strategy(children="each", consecutive=consecutive)
    tick = Tick(state, 1000.0, Budget({}, frozenset(), {}), Slots({}))
    found = tick.count(proc("w:a", pid=11), Sample(max(sizes) * MiB, "rss", 1, units),
                       Rule("any", 100 * MiB, strategy), strategy)
    assert (found.candidate[0].pid if found.candidate else None) == candidate
    assert found.max_count == max_count
