"""listener.core.policy.decide: tables of ticks with an injected `now`; no I/O, no clock."""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.config.settings import Config
from listener.core import policy
from listener.core.model import ProcessInfo, Restart, Sample, SignalChild, Target, Unit
from listener.core.policy import Decision, PolicyState, Verdict
from listener.core.rules import Rules
from listener.core.servers import Server

MiB = 1024**2
LIMIT = 100 * MiB
OVER = 150 * MiB
UNDER = 50 * MiB
ANY_100MB = Rules(any=LIMIT)


def tuned(rules: Rules, **knobs: object) -> Rules:
    """`rules` with some strategy knobs changed (--consecutive, --grace, --children...)."""
    return replace(rules, strategy=replace(rules.strategy, **knobs))


def proc(namespec: str, pid: int, state: str = "RUNNING", start: float = 0.0) -> ProcessInfo:
    group, _, name = namespec.partition(":")
    return ProcessInfo(group, name, pid, state, start)


def sample(value: int, units: Iterable[Unit] = (), measure: str = "rss") -> Sample:
    units = tuple(units)
    return Sample(value, measure, max(0, len(units) - 1), units)


def verdicts(decision: Decision) -> dict[str, Verdict]:
    return {j.process.namespec: j.verdict for j in decision.judgements}


def acted(decision: Decision) -> list[str]:
    return [a.target.namespec for a in decision.actions]


class Ticks:
    """Feeds decide() one tick at a time, carrying its state like the daemon does."""

    def __init__(self, rules: Rules, **identity: frozenset) -> None:
        self.rules = rules
        self.identity = identity
        self.state = PolicyState()

    def tick(self, now: float, processes: Iterable[ProcessInfo], memory: Mapping[str, int | Sample],
             busy: Iterable[str] = ()) -> Decision:
        samples = {n: m if isinstance(m, Sample) else sample(m) for n, m in memory.items()}
        decision = policy.decide(list(processes), samples, self.rules, self.state, now,
                                 busy=frozenset(busy), **self.identity)
        self.state = decision.state
        return decision


def decide_once(rules: Rules, processes: list[ProcessInfo], memory: Mapping[str, int | Sample],
                now: float = 1000.0, **kwargs: frozenset) -> Decision:
    samples = {n: m if isinstance(m, Sample) else sample(m) for n, m in memory.items()}
    return policy.decide(processes, samples, rules, PolicyState(), now, **kwargs)


# --- one tick: limit, state, identity, exclusions ---


@pytest.mark.parametrize(
    ("memory", "verdict", "actions"),
    [
        (OVER, Verdict.ACT, 1),
        (LIMIT + 1, Verdict.ACT, 1),
        (LIMIT, Verdict.OK, 0),  # at the limit is not over it
        (UNDER, Verdict.OK, 0),
        (0, Verdict.OK, 0),
    ],
)
def test_over_the_limit_is_restarted(memory: int, verdict: Verdict, actions: int) -> None:
    decision = decide_once(ANY_100MB, [proc("web:web", 10)], {"web:web": memory})
    assert verdicts(decision) == {"web:web": verdict}
    assert len(decision.actions) == actions
    assert decision.judgements[0].over is (memory > LIMIT)


def test_restart_action_describes_what_was_decided() -> None:
    rules = Rules(groups=(("web", LIMIT),))
    decision = decide_once(rules, [proc("web:web_00", 4242, start=400.0)],
                           {"web:web_00": sample(OVER, measure="pss")}, now=1000.0)
    (action,) = decision.actions
    assert action == Restart(Target(group="web", name="web_00", pid=4242, memory=OVER, limit=LIMIT,
                                    measure="pss", rule="group web"), uptime=600.0)
    assert action.target.namespec == "web:web_00"


@pytest.mark.parametrize(
    ("state", "pid"),
    [("STARTING", 10), ("STOPPING", 10), ("STOPPED", 0), ("BACKOFF", 0), ("EXITED", 0), ("FATAL", 0),
     ("UNKNOWN", 10), ("RUNNING", 0)],
)
def test_process_not_running_is_skipped(state: str, pid: int) -> None:
    decision = decide_once(ANY_100MB, [proc("web:web", pid, state)], {"web:web": OVER})
    assert verdicts(decision) == {"web:web": Verdict.STOPPED}
    assert decision.actions == ()


def test_no_limit_and_no_sample() -> None:
    rules = Rules(groups=(("web", LIMIT),))
    decision = decide_once(rules, [proc("web:web", 10), proc("cron:cron", 11), proc("web:gone", 12)],
                           {"web:web": UNDER, "cron:cron": OVER})
    assert verdicts(decision) == {"web:web": Verdict.OK, "cron:cron": Verdict.NO_LIMIT,
                                  "web:gone": Verdict.NO_SAMPLE}
    assert decision.actions == ()


@pytest.mark.parametrize(
    "identity",
    [
        {"self_names": frozenset({"memwatch:memwatch"})},
        {"self_pids": frozenset({77})},
        {"self_names": frozenset({"memwatch:memwatch"}), "self_pids": frozenset({77})},
    ],
)
def test_the_listener_itself_is_never_a_target_even_with_any(identity: dict) -> None:
    processes = [proc("memwatch:memwatch", 77), proc("web:web", 10)]
    memory = {"memwatch:memwatch": 10 * OVER, "web:web": OVER}
    decision = decide_once(ANY_100MB, processes, memory, **identity)
    assert verdicts(decision) == {"memwatch:memwatch": Verdict.SELF, "web:web": Verdict.ACT}
    assert acted(decision) == ["web:web"]


def test_the_listener_itself_is_never_a_target_even_when_named_by_program() -> None:
    rules = Rules(programs=(("memwatch", LIMIT),))
    decision = decide_once(rules, [proc("memwatch:memwatch", 77)], {"memwatch:memwatch": OVER},
                           self_names=frozenset({"memwatch:memwatch"}))
    assert decision.actions == ()


def test_excluded_processes_are_left_alone() -> None:
    rules = replace(ANY_100MB, exclude=("cron:*", "*:beat"))
    processes = [proc("cron:daily", 10), proc("worker:beat", 11), proc("worker:worker_00", 12)]
    decision = decide_once(rules, processes, dict.fromkeys(["cron:daily", "worker:beat",
                                                            "worker:worker_00"], OVER))
    assert verdicts(decision) == {"cron:daily": Verdict.EXCLUDED, "worker:beat": Verdict.EXCLUDED,
                                  "worker:worker_00": Verdict.ACT}


def test_one_judgement_per_process_in_supervisord_order() -> None:
    processes = [proc("b:b", 1), proc("a:a", 2), proc("c:c", 3, "STOPPED")]
    decision = decide_once(ANY_100MB, processes, {"a:a": OVER, "b:b": UNDER})
    assert [j.process.namespec for j in decision.judgements] == ["b:b", "a:a", "c:c"]


def test_a_process_matched_by_several_rules_gets_one_action_at_the_most_specific_limit() -> None:
    rules = Rules(programs=(("web:web_00", 300 * MiB), ("web:*", 200 * MiB)),
                  groups=(("web", 150 * MiB),), any=LIMIT)
    decision = decide_once(rules, [proc("web:web_00", 10), proc("web:web_01", 11)],
                           {"web:web_00": 400 * MiB, "web:web_01": 250 * MiB})
    assert verdicts(decision) == {"web:web_00": Verdict.ACT, "web:web_01": Verdict.DEFERRED}
    (action,) = decision.actions
    assert (action.target.limit, action.target.rule) == (300 * MiB, "program web:web_00")
    assert decision.judgements[1].limit == 200 * MiB


def test_decide_does_not_change_the_state_it_is_given() -> None:
    rules = tuned(ANY_100MB, consecutive=3, max_restarts=1)
    state = PolicyState(over_counts={("web:web", 10): (0.0, 1)}, history={"web:web": (900.0,)},
                        warned=frozenset({"web:web"}))
    before = (dict(state.over_counts), dict(state.history), state.warned)
    first = policy.decide([proc("web:web", 10)], {"web:web": sample(OVER)}, rules, state, 1000.0)
    second = policy.decide([proc("web:web", 10)], {"web:web": sample(OVER)}, rules, state, 1000.0)
    assert (dict(state.over_counts), dict(state.history), state.warned) == before
    assert first == second


# --- over several ticks ---


def test_consecutive_samples_over_the_limit_before_acting() -> None:
    ticks = Ticks(tuned(ANY_100MB, consecutive=3))
    web = [proc("web:web", 10)]
    timeline = [  # (memory, verdict, over_samples)
        (OVER, Verdict.COUNTING, 1),
        (OVER, Verdict.COUNTING, 2),
        (UNDER, Verdict.OK, 0),  # one sample under the limit starts the count again
        (OVER, Verdict.COUNTING, 1),
        (OVER, Verdict.COUNTING, 2),
        (OVER, Verdict.ACT, 3),
        (OVER, Verdict.COUNTING, 1),  # acted on: a new run of samples starts
    ]
    for i, (memory, verdict, count) in enumerate(timeline):
        decision = ticks.tick(1000.0 + 5 * i, web, {"web:web": memory})
        (judgement,) = decision.judgements
        assert (judgement.verdict, judgement.over_samples) == (verdict, count), f"tick {i}"
        assert len(decision.actions) == (verdict == Verdict.ACT)


@pytest.mark.parametrize("children", ["none", "each"])
def test_a_respawn_that_got_the_same_pid_starts_a_new_count(children: str) -> None:
    ticks = Ticks(tuned(ANY_100MB, consecutive=3, children=children))
    timeline = [  # (now, the process's start time, verdict)
        (1000.0, 900.0, Verdict.COUNTING),
        (1005.0, 900.0, Verdict.COUNTING),
        (1010.0, 1008.0, Verdict.COUNTING),  # crashed and respawned as pid 10 again
        (1015.0, 1008.0, Verdict.COUNTING),
        (1020.0, 1008.0, Verdict.ACT),
    ]
    for now, start, verdict in timeline:
        unit = Unit(10, OVER, start)
        memory = Sample(OVER, "rss", 0, (unit,) if children == "each" else ())
        decision = ticks.tick(now, [proc("web:web", 10, start=start)], {"web:web": memory})
        assert verdicts(decision) == {"web:web": verdict}, now


def test_a_new_pid_starts_a_new_count() -> None:
    ticks = Ticks(tuned(ANY_100MB, consecutive=2))
    timeline = [
        (1000.0, 10, Verdict.COUNTING),
        (1005.0, 11, Verdict.COUNTING),  # restarted by someone else in between: its own count
        (1010.0, 11, Verdict.ACT),
    ]
    for now, pid, verdict in timeline:
        assert verdicts(ticks.tick(now, [proc("web:web", pid)], {"web:web": OVER})) == {"web:web": verdict}


def test_grace_leaves_a_young_process_alone_then_acts() -> None:
    ticks = Ticks(tuned(ANY_100MB, grace=60.0))
    web = [proc("web:web", 10, start=1000.0)]
    timeline = [(1000.0, Verdict.GRACE), (1030.0, Verdict.GRACE), (1059.0, Verdict.GRACE),
                (1060.0, Verdict.ACT)]
    for now, verdict in timeline:
        decision = ticks.tick(now, web, {"web:web": OVER})
        assert verdicts(decision) == {"web:web": verdict}, now
        assert decision.judgements[0].over
    assert acted(decision) == ["web:web"]


def test_grace_does_not_apply_to_a_process_under_the_limit() -> None:
    decision = decide_once(tuned(ANY_100MB, grace=60.0), [proc("web:web", 10, start=990.0)],
                           {"web:web": UNDER})
    assert verdicts(decision) == {"web:web": Verdict.OK}


def test_restart_budget() -> None:
    """--max-restarts 2 --restart-window 600: the third action in the window is withheld."""
    ticks = Ticks(tuned(ANY_100MB, max_restarts=2, restart_window=600.0))
    timeline = [  # (now, verdict)
        (1000.0, Verdict.ACT),
        (1010.0, Verdict.ACT),
        (1020.0, Verdict.SUPPRESSED),
        (1030.0, Verdict.SUPPRESSED),
        (1599.0, Verdict.SUPPRESSED),
        (1600.0, Verdict.ACT),  # the action of 1000 has left the window
        (1605.0, Verdict.SUPPRESSED),  # 1010 and 1600 are in it
        (1610.0, Verdict.ACT),  # 1010 has left it
        (1615.0, Verdict.SUPPRESSED),
    ]
    suppressed_any = False
    for now, verdict in timeline:
        decision = ticks.tick(now, [proc("web:web", 10)], {"web:web": OVER})
        assert verdicts(decision) == {"web:web": verdict}, now
        assert len(decision.actions) == (verdict == Verdict.ACT)
        suppressed = ["web:web"] if verdict == Verdict.SUPPRESSED else []
        assert [j.process.namespec for j in decision.suppressed] == suppressed
        suppressed_any |= bool(decision.newly_suppressed)
        if verdict == Verdict.SUPPRESSED and now == 1020.0:
            assert decision.newly_suppressed == ("web:web",)
    assert suppressed_any


def test_no_budget_by_default() -> None:
    ticks = Ticks(ANY_100MB)
    for i in range(20):
        decision = ticks.tick(1000.0 + i, [proc("web:web", 10)], {"web:web": OVER})
        assert verdicts(decision) == {"web:web": Verdict.ACT}


def test_budget_exhaustion_is_reported_once_per_exhaustion() -> None:
    """Regression: `warned` was kept only while the budget was NOT used up, so the daemon logged
    'restart budget used up' on every suppressed tick."""
    ticks = Ticks(tuned(ANY_100MB, max_restarts=2, restart_window=600.0))
    reported = {}
    for now in (1000.0, 1010.0, 1020.0, 1030.0, 1040.0, 1600.0, 1610.0, 1620.0, 1630.0):
        reported[now] = ticks.tick(now, [proc("web:web", 10)], {"web:web": OVER}).newly_suppressed
    assert reported == {
        1000.0: (), 1010.0: (),
        1020.0: ("web:web",), 1030.0: (), 1040.0: (),  # once
        1600.0: (), 1610.0: (),  # the budget freed up and was used again...
        1620.0: ("web:web",), 1630.0: (),  # ...so the next exhaustion is reported once more
    }


def test_suppressed_process_keeps_counting_and_does_not_take_a_parallel_slot() -> None:
    ticks = Ticks(tuned(ANY_100MB, max_restarts=1, max_parallel=1))
    web = [proc("web:web_00", 10), proc("web:web_01", 11)]
    assert verdicts(ticks.tick(1000.0, web[:1], {"web:web_00": OVER})) == {"web:web_00": Verdict.ACT}
    decision = ticks.tick(1010.0, web, {"web:web_00": OVER, "web:web_01": OVER})
    assert verdicts(decision) == {"web:web_00": Verdict.SUPPRESSED, "web:web_01": Verdict.ACT}


# --- rolling restarts: --max-parallel per group ---

WEB = [proc(f"web:web_0{i}", 10 + i) for i in range(4)]
WEB_ALL_OVER = {p.namespec: OVER for p in WEB}


def test_max_parallel_one_action_per_group_per_tick() -> None:
    decision = decide_once(ANY_100MB, WEB, WEB_ALL_OVER)
    assert acted(decision) == ["web:web_00"]
    assert verdicts(decision) == {"web:web_00": Verdict.ACT, "web:web_01": Verdict.DEFERRED,
                                  "web:web_02": Verdict.DEFERRED, "web:web_03": Verdict.DEFERRED}


def test_max_parallel_busy_restart_blocks_the_group_but_not_other_groups() -> None:
    processes = [*WEB, proc("worker:worker_00", 20), proc("worker:worker_01", 21)]
    memory = {**WEB_ALL_OVER, "worker:worker_00": OVER, "worker:worker_01": OVER}
    decision = decide_once(ANY_100MB, processes, memory, busy=frozenset({"web:web_00"}))
    assert verdicts(decision) == {
        "web:web_00": Verdict.BUSY, "web:web_01": Verdict.DEFERRED, "web:web_02": Verdict.DEFERRED,
        "web:web_03": Verdict.DEFERRED,
        "worker:worker_00": Verdict.ACT, "worker:worker_01": Verdict.DEFERRED,
    }
    assert acted(decision) == ["worker:worker_00"]


def test_max_parallel_busy_process_of_a_group_not_listed_still_counts() -> None:
    decision = decide_once(ANY_100MB, WEB[1:], WEB_ALL_OVER, busy=frozenset({"web:web_00"}))
    assert decision.actions == ()


@pytest.mark.parametrize(("state", "takes_a_slot"), [
    ("STARTING", True), ("BACKOFF", True), ("STOPPING", True),
    ("FATAL", False), ("EXITED", False), ("STOPPED", False),
])
def test_max_parallel_counts_members_on_their_way_up_or_down_whoever_moved_them(
        state: str, takes_a_slot: bool) -> None:
    processes = [proc("web:web_00", 10, state=state), *WEB[1:]]
    decision = decide_once(ANY_100MB, processes, WEB_ALL_OVER)
    assert acted(decision) == ([] if takes_a_slot else ["web:web_01"])


@pytest.mark.parametrize(("max_parallel", "busy", "expected"), [
    (2, (), ["web:web_00", "web:web_01"]),
    (2, ("web:web_00",), ["web:web_01"]),
    (4, (), ["web:web_00", "web:web_01", "web:web_02", "web:web_03"]),
    (4, ("web:web_00", "web:web_01"), ["web:web_02", "web:web_03"]),
])
def test_max_parallel_n(max_parallel: int, busy: tuple[str, ...], expected: list[str]) -> None:
    rules = tuned(ANY_100MB, max_parallel=max_parallel)
    assert acted(decide_once(rules, WEB, WEB_ALL_OVER, busy=frozenset(busy))) == expected


def test_rolling_restart_of_a_group_all_over_the_limit() -> None:
    """One at a time: each restart is in flight for one tick, then comes back small with a new pid."""
    ticks = Ticks(ANY_100MB)
    processes = {p.namespec: p for p in WEB}
    memory = dict(WEB_ALL_OVER)
    busy: set[str] = set()
    order = []
    for i in range(12):
        decision = ticks.tick(1000.0 + 5 * i, processes.values(), memory, busy=busy)
        assert len(decision.actions) <= 1
        for namespec in busy:  # the restart finished: new pid, small again
            old = processes[namespec]
            processes[namespec] = replace(old, pid=old.pid + 100, start=1000.0 + 5 * i)
            memory[namespec] = UNDER
        busy = set(acted(decision))
        order += acted(decision)
    assert order == ["web:web_00", "web:web_01", "web:web_02", "web:web_03"]


# --- --children each ---

MASTER, CHILD_A, CHILD_B = 10, 11, 12


def tree(master: int, a: int, b: int, started: float = 0.0) -> Sample:
    units = (Unit(MASTER, master, started), Unit(CHILD_A, a, started), Unit(CHILD_B, b, started))
    return sample(max(master, a, b), units)


EACH = tuned(ANY_100MB, children="each")
EACH_HUP = tuned(EACH, child_signal=int(signal.SIGHUP))


def test_each_the_largest_over_limit_child_is_signalled_with_child_signal() -> None:
    decision = decide_once(EACH_HUP, [proc("web:web", MASTER, start=500.0)],
                           {"web:web": tree(UNDER, OVER, 2 * OVER, started=800.0)})
    (action,) = decision.actions
    assert action == SignalChild(
        Target(group="web", name="web", pid=MASTER, memory=2 * OVER, limit=LIMIT, measure="rss", rule="any",
               by=CHILD_B),
        child_pid=CHILD_B, child_started=800.0, signal=signal.SIGHUP)  # the child's start, checked again
    assert verdicts(decision) == {"web:web": Verdict.ACT}


AUTO = tuned(ANY_100MB, children="auto")


@pytest.mark.parametrize(
    ("server", "action"),
    [(Server.UWSGI, "signal SIGHUP"), (Server.GUNICORN, "signal SIGTERM"),
     (Server.CELERY, "restart"), (Server.PLAIN, "none")],
)
def test_auto_acts_on_a_worker_over_the_limit_as_its_server_replaces_one(server: Server,
                                                                        action: str) -> None:
    """The sampler says which server it found (and, for a plain process, measures the pid alone:
    here its own figure is under the limit, so nothing is done)."""
    units = tree(UNDER, OVER, UNDER).units
    found = Sample(OVER, "rss", 2, units, server) if server is not Server.PLAIN else \
        Sample(UNDER, "rss", 0, (), server)
    decision = decide_once(AUTO, [proc("web:web", MASTER)], {"web:web": found})
    done = [f"signal {signal.Signals(a.signal).name}" if isinstance(a, SignalChild) else "restart"
            for a in decision.actions]
    assert done == ([] if action == "none" else [action])
    (judgement,) = decision.judgements
    assert judgement.strategy is not None
    assert judgement.strategy.description.endswith(f"(auto: {server.value or 'plain'})")


def test_another_memwatch_listener_is_never_judged() -> None:
    listener = Sample(10 * OVER, "rss", 0, (), Server.MEMWATCH)
    decision = decide_once(ANY_100MB, [proc("memwatch-web:memwatch-web", 77)],
                           {"memwatch-web:memwatch-web": listener})
    assert decision.actions == ()
    assert verdicts(decision) == {"memwatch-web:memwatch-web": Verdict.LISTENER}


def test_each_without_child_signal_an_over_limit_child_restarts_the_program() -> None:
    decision = decide_once(EACH, [proc("web:web", MASTER)], {"web:web": tree(UNDER, OVER, UNDER)})
    (action,) = decision.actions
    assert isinstance(action, Restart)
    assert (action.target.namespec, action.target.pid) == ("web:web", MASTER)


def test_each_restart_for_a_child_targets_the_supervised_pid() -> None:
    """The restarter checks the pid against supervisord's before restarting: it must be the
    supervised process's, not the child's (a child's pid made it refuse to act); the uptime too
    is the supervised process's."""
    decision = decide_once(EACH, [proc("web:web", MASTER, start=500.0)],
                           {"web:web": tree(UNDER, OVER, UNDER, started=800.0)}, now=1000.0)
    (action,) = decision.actions
    assert isinstance(action, Restart)
    assert (action.target.pid, action.uptime) == (MASTER, 500.0)
    assert action.target.memory == OVER  # the child's figure, which is what went over


@pytest.mark.parametrize("rules", [EACH, EACH_HUP], ids=["restart", "child-signal"])
def test_each_the_master_over_the_limit_restarts_the_program(rules: Rules) -> None:
    decision = decide_once(rules, [proc("web:web", MASTER)], {"web:web": tree(2 * OVER, OVER, UNDER)})
    (action,) = decision.actions
    assert isinstance(action, Restart)
    assert (action.target.pid, action.target.memory) == (MASTER, 2 * OVER)


def test_each_children_under_the_limit_are_fine_even_if_their_sum_is_not() -> None:
    memory = {"web:web": tree(90 * MiB, 90 * MiB, 90 * MiB)}
    decision = decide_once(EACH_HUP, [proc("web:web", MASTER)], memory)
    assert verdicts(decision) == {"web:web": Verdict.OK}


def test_each_counts_consecutive_samples_per_child() -> None:
    ticks = Ticks(tuned(EACH_HUP, consecutive=2))
    web = [proc("web:web", MASTER)]
    timeline = [  # (master, child A, child B) -> verdict, over_samples, signalled pid
        ((UNDER, OVER, UNDER), Verdict.COUNTING, 1, None),
        ((UNDER, UNDER, OVER), Verdict.COUNTING, 1, None),  # A went under: its count is gone; B starts at 1
        ((UNDER, OVER, OVER), Verdict.ACT, 2, CHILD_B),  # B has two in a row; A starts again at 1
        ((UNDER, OVER, UNDER), Verdict.ACT, 2, CHILD_A),
    ]
    for i, (memory, verdict, count, pid) in enumerate(timeline):
        decision = ticks.tick(1000.0 + 5 * i, web, {"web:web": tree(*memory)})
        (judgement,) = decision.judgements
        assert (judgement.verdict, judgement.over_samples) == (verdict, count), f"tick {i}"
        assert [a.child_pid for a in decision.actions] == ([pid] if pid else []), f"tick {i}"


def test_each_grace_applies_to_each_child_by_its_own_start_time() -> None:
    rules = tuned(EACH_HUP, grace=60.0)
    units = (Unit(MASTER, UNDER, 0.0), Unit(CHILD_A, 2 * OVER, 990.0), Unit(CHILD_B, OVER, 0.0))
    decision = decide_once(rules, [proc("web:web", MASTER)], {"web:web": sample(2 * OVER, units)})
    (action,) = decision.actions  # A is larger but young: B, old enough, is the one signalled
    assert isinstance(action, SignalChild)
    assert action.child_pid == CHILD_B


def test_each_young_child_alone_over_the_limit_is_in_grace() -> None:
    rules = tuned(EACH_HUP, grace=60.0)
    units = (Unit(MASTER, UNDER, 0.0), Unit(CHILD_A, OVER, 990.0))
    decision = decide_once(rules, [proc("web:web", MASTER)], {"web:web": sample(OVER, units)})
    assert verdicts(decision) == {"web:web": Verdict.GRACE}


def test_each_child_signals_are_not_held_back_by_max_parallel() -> None:
    processes = [proc("web:web_00", MASTER), proc("web:web_01", 20)]
    memory = {"web:web_00": tree(UNDER, OVER, UNDER),
              "web:web_01": sample(OVER, (Unit(20, UNDER, 0.0), Unit(21, OVER, 0.0)))}
    decision = decide_once(EACH_HUP, processes, memory)
    assert [(type(a), a.child_pid) for a in decision.actions] == [(SignalChild, CHILD_A), (SignalChild, 21)]


# --- a child signal is a lifecycle: sent once, waited for, escalated once ---

HUP_TIMEOUT_60 = tuned(EACH_HUP, child_signal_timeout=60.0)


def test_a_signalled_child_that_stays_big_is_not_signalled_again_while_it_drains() -> None:
    ticks = Ticks(HUP_TIMEOUT_60)
    web = [proc("web:web", MASTER)]
    first = ticks.tick(1000.0, web, {"web:web": tree(UNDER, OVER, UNDER)})
    assert [(type(a), a.child_pid) for a in first.actions] == [(SignalChild, CHILD_A)]
    for now in (1005.0, 1010.0, 1055.0):  # a long request: still there, still over
        later = ticks.tick(now, web, {"web:web": tree(UNDER, OVER, UNDER)})
        assert later.actions == () and verdicts(later) == {"web:web": Verdict.DRAINING}, now
    assert ticks.state.history["web:web"] == (1000.0,)  # one signal, one slot of the budget


def test_a_child_that_outlives_its_timeout_is_escalated_once_to_a_program_restart() -> None:
    ticks = Ticks(HUP_TIMEOUT_60)
    web = [proc("web:web", MASTER, start=500.0)]
    ticks.tick(1000.0, web, {"web:web": tree(UNDER, OVER, UNDER)})
    (escalation,) = ticks.tick(1060.0, web, {"web:web": tree(UNDER, OVER, UNDER)}).actions
    assert escalation == Restart(Target("web", "web", MASTER, OVER, LIMIT, "rss", "any", by=CHILD_A),
                                 uptime=560.0, escalates=CHILD_A)
    # the restart is in flight: busy, nothing more; never a second escalation for that child
    assert ticks.tick(1065.0, web, {"web:web": tree(UNDER, OVER, UNDER)},
                      busy=["web:web"]).actions == ()


def test_a_drained_child_is_forgotten_and_a_new_one_on_its_pid_is_a_new_child() -> None:
    ticks = Ticks(HUP_TIMEOUT_60)
    web = [proc("web:web", MASTER)]
    ticks.tick(1000.0, web, {"web:web": tree(UNDER, OVER, UNDER)})
    replaced = (Unit(MASTER, UNDER, 0.0), Unit(CHILD_A, OVER, 1001.0), Unit(CHILD_B, UNDER, 0.0))
    decision = ticks.tick(1005.0, web, {"web:web": sample(OVER, replaced)})
    assert [(type(a), a.child_pid) for a in decision.actions] == [(SignalChild, CHILD_A)]


def test_another_child_going_over_while_one_drains_is_signalled_too() -> None:
    ticks = Ticks(HUP_TIMEOUT_60)
    web = [proc("web:web", MASTER)]
    ticks.tick(1000.0, web, {"web:web": tree(UNDER, OVER, UNDER)})
    decision = ticks.tick(1005.0, web, {"web:web": tree(UNDER, OVER, OVER)})
    assert [(type(a), a.child_pid) for a in decision.actions] == [(SignalChild, CHILD_B)]


GRANIAN_AUTO = tuned(ANY_100MB, children="auto", child_signal_timeout=60.0)


def granian(master: int, a: int, b: int) -> Sample:
    return replace(tree(master, a, b), server=Server.GRANIAN)


def test_a_granian_worker_over_its_limit_gets_its_master_signalled_to_roll_the_workers() -> None:
    ticks = Ticks(GRANIAN_AUTO)
    web = [proc("web:web", MASTER)]
    (action,) = ticks.tick(1000.0, web, {"web:web": granian(UNDER, OVER, UNDER)}).actions
    assert isinstance(action, SignalChild)
    assert (action.child_pid, action.signal, action.to_master) == (CHILD_A, signal.SIGHUP, True)


def test_a_granian_master_is_not_signalled_again_while_its_roll_drains_a_worker() -> None:
    ticks = Ticks(GRANIAN_AUTO)
    web = [proc("web:web", MASTER)]
    ticks.tick(1000.0, web, {"web:web": granian(UNDER, OVER, UNDER)})
    # another worker goes over during the roll: the roll replaces it too, no second signal
    later = ticks.tick(1005.0, web, {"web:web": granian(UNDER, OVER, OVER)})
    assert later.actions == () and verdicts(later) == {"web:web": Verdict.DRAINING}


def test_a_granian_roll_has_a_turn_per_worker_before_its_worker_is_overdue() -> None:
    ticks = Ticks(GRANIAN_AUTO)
    web = [proc("web:web", MASTER)]
    ticks.tick(1000.0, web, {"web:web": granian(UNDER, OVER, UNDER)})
    # 60 s of timeout, then 5 s per unit of the tree (3): overdue at 75 s, not at 60
    assert ticks.tick(1060.0, web, {"web:web": granian(UNDER, OVER, UNDER)}).actions == ()
    (escalation,) = ticks.tick(1075.0, web, {"web:web": granian(UNDER, OVER, UNDER)}).actions
    assert isinstance(escalation, Restart) and escalation.escalates == CHILD_A


@pytest.mark.parametrize("server", [Server.POOL, Server.CELERY])
def test_a_pool_child_over_its_limit_restarts_the_parent_never_a_signal(server: Server) -> None:
    decision = decide_once(tuned(ANY_100MB, children="auto"), [proc("jobs:jobs", MASTER)],
                           {"jobs:jobs": replace(tree(UNDER, OVER, UNDER), server=server)})
    (action,) = decision.actions
    assert isinstance(action, Restart) and action.target.by == CHILD_A


def test_a_taskworker_child_gets_the_signal_it_catches_else_its_program_restarts() -> None:
    decision = decide_once(tuned(ANY_100MB, children="auto"), [proc("jobs:jobs", MASTER)],
                           {"jobs:jobs": replace(tree(UNDER, OVER, UNDER), server=Server.TASKWORKER)})
    (action,) = decision.actions
    assert isinstance(action, SignalChild) and action.child_pid == CHILD_A
    assert action.if_caught == (signal.SIGTERM, signal.SIGINT) and not action.to_master
    assert isinstance(action.otherwise, Restart) and action.otherwise.target.by == CHILD_A
    assert action.otherwise.escalates is None  # a restart over the limit, not a late child


def test_an_explicit_child_signal_to_a_taskworker_is_sent_as_the_rule_says() -> None:
    rules = tuned(ANY_100MB, children="auto", child_signal=int(signal.SIGUSR1))
    decision = decide_once(rules, [proc("jobs:jobs", MASTER)],
                           {"jobs:jobs": replace(tree(UNDER, OVER, UNDER), server=Server.TASKWORKER)})
    (action,) = decision.actions
    assert isinstance(action, SignalChild) and action.signal == signal.SIGUSR1
    assert action.if_caught == () and action.otherwise is None


def test_sum_mode_judges_the_whole_figure_as_one() -> None:
    rules = tuned(ANY_100MB, children="sum")
    decision = decide_once(rules, [proc("web:web", MASTER)], {"web:web": sample(OVER)})
    (action,) = decision.actions
    assert isinstance(action, Restart)
    assert (action.target.pid, action.target.memory) == (MASTER, OVER)


# --- dry run, memory of the policy, everything at once ---


def run_scenario(rules: Rules) -> list[tuple]:
    ticks = Ticks(rules)
    processes = WEB + [proc("worker:worker", 20, start=1000.0)]
    record = []
    for i in range(10):
        memory = {p.namespec: (OVER if (i + j) % 3 else UNDER) for j, p in enumerate(processes)}
        decision = ticks.tick(1000.0 + 10 * i, processes, memory, busy={"web:web_03"} if i == 4 else ())
        record.append((decision.actions, decision.judgements, decision.suppressed,
                       decision.newly_suppressed))
    return record


def test_dry_run_does_not_change_decisions() -> None:
    """Dry run is the daemon's business (it does not act): the policy is given the config's rules,
    which --dry-run leaves alone, so it decides exactly the same."""
    rules = tuned(ANY_100MB, consecutive=2, grace=30.0, max_restarts=2, restart_window=60.0)
    wet = Config(rules=rules)
    dry = replace(wet, dry_run=True)
    assert dry.rules == wet.rules
    assert run_scenario(dry.rules) == run_scenario(wet.rules)
    assert any(actions for actions, *_ in run_scenario(wet.rules))


def test_state_only_keeps_processes_seen_this_tick() -> None:
    ticks = Ticks(tuned(ANY_100MB, consecutive=3, max_restarts=1))
    a, b = proc("web:a", 10), proc("web:b", 11)
    ticks.tick(1000.0, [a, b], {"web:a": OVER, "web:b": OVER})
    assert set(ticks.state.over_counts) == {("web:a", 10), ("web:b", 11)}
    ticks.tick(1005.0, [a], {"web:a": OVER})
    assert set(ticks.state.over_counts) == {("web:a", 10)}
    ticks.tick(1010.0, [a], {"web:a": OVER})  # acts: history
    assert set(ticks.state.history) == {"web:a"}
    ticks.tick(1015.0, [b], {"web:b": UNDER})
    assert dict(ticks.state.over_counts) == {}
    assert dict(ticks.state.history) == {}
    assert ticks.state.warned == frozenset()


def test_state_does_not_grow_with_churn() -> None:
    """A thousand short-lived processes (and pids) leave no trace once they are gone."""
    ticks = Ticks(tuned(ANY_100MB, consecutive=5, max_restarts=3, restart_window=3600.0))
    for i in range(1000):
        processes = [proc(f"jobs:job_{i}", 1000 + i), proc("web:web", 50_000 + i)]
        ticks.tick(1000.0 + i, processes, {p.namespec: OVER for p in processes})
        assert len(ticks.state.over_counts) <= 2
        assert len(ticks.state.history) <= 2
        assert len(ticks.state.warned) <= 2


def test_processes_not_over_the_limit_leave_no_state() -> None:
    ticks = Ticks(tuned(ANY_100MB, consecutive=3))
    ticks.tick(1000.0, WEB, {p.namespec: UNDER for p in WEB})
    assert ticks.state == PolicyState(over_counts={}, history={}, warned=frozenset())


def test_consecutive_grace_budget_and_parallel_together() -> None:
    ticks = Ticks(tuned(ANY_100MB, consecutive=2, grace=30.0, max_restarts=1, restart_window=600.0,
                        max_parallel=1))
    web_00, web_01 = proc("web:web_00", 10, start=0.0), proc("web:web_01", 11, start=990.0)
    new_00, new_01 = proc("web:web_00", 110, start=1025.0), proc("web:web_01", 111, start=1035.0)
    newer_00 = proc("web:web_00", 210, start=1635.0)
    timeline = [
        # now, processes, memory (00, 01), busy, expected verdicts (00, 01)
        (1000.0, (web_00, web_01), (OVER, OVER), (), (Verdict.COUNTING, Verdict.GRACE)),
        # 01 has run 20s of its 30s
        (1010.0, (web_00, web_01), (OVER, OVER), (), (Verdict.ACT, Verdict.GRACE)),
        # 00 in flight
        (1020.0, (web_00, web_01), (OVER, OVER), ("web:web_00",), (Verdict.BUSY, Verdict.DEFERRED)),
        (1030.0, (new_00, web_01), (UNDER, OVER), (), (Verdict.OK, Verdict.ACT)),
        # 00 is 15s old
        (1040.0, (new_00, web_01), (OVER, OVER), ("web:web_01",), (Verdict.GRACE, Verdict.BUSY)),
        # 00's one restart is used
        (1060.0, (new_00, new_01), (OVER, UNDER), (), (Verdict.SUPPRESSED, Verdict.OK)),
        (1070.0, (new_00, new_01), (OVER, OVER), (), (Verdict.SUPPRESSED, Verdict.COUNTING)),
        (1080.0, (new_00, new_01), (OVER, OVER), (), (Verdict.SUPPRESSED, Verdict.SUPPRESSED)),
        # 00's restart of 1010 expired
        (1611.0, (new_00, new_01), (OVER, OVER), (), (Verdict.ACT, Verdict.SUPPRESSED)),
        # 01's too
        (1631.0, (new_00, new_01), (OVER, OVER), ("web:web_00",), (Verdict.BUSY, Verdict.DEFERRED)),
        (1641.0, (newer_00, new_01), (UNDER, OVER), (), (Verdict.OK, Verdict.ACT)),
    ]
    for now, processes, (m00, m01), busy, (v00, v01) in timeline:
        decision = ticks.tick(now, processes, {"web:web_00": m00, "web:web_01": m01}, busy=busy)
        assert verdicts(decision) == {"web:web_00": v00, "web:web_01": v01}, now
        expected = [n for n, v in (("web:web_00", v00), ("web:web_01", v01)) if v == Verdict.ACT]
        assert acted(decision) == expected, now


# --- invariants over random histories ---

_NAMESPECS = ["web:web_00", "web:web_01", "web:web_02", "worker:worker_00", "worker:worker_01",
              "memwatch:memwatch"]


@st.composite
def histories(draw: st.DrawFn) -> tuple[Rules, list[tuple[list[ProcessInfo], dict[str, Sample], set[str]]]]:
    children = draw(st.sampled_from(["none", "sum", "each"]))
    rules = replace(
        tuned(
            ANY_100MB,
            children=children,
            child_signal=draw(st.sampled_from([None, int(signal.SIGHUP)])) if children == "each" else None,
            consecutive=draw(st.integers(1, 3)),
            grace=draw(st.sampled_from([0.0, 12.0])),
            max_restarts=draw(st.integers(0, 2)),
            restart_window=draw(st.sampled_from([10.0, 60.0])),
            max_parallel=draw(st.integers(1, 2)),
        ),
        exclude=draw(st.sampled_from([(), ("worker:*",)])),
    )
    memory = st.sampled_from([UNDER, LIMIT, OVER, 2 * OVER])
    ticks = []
    for _ in range(draw(st.integers(1, 6))):
        names = draw(st.lists(st.sampled_from(_NAMESPECS), unique=True, max_size=len(_NAMESPECS)))
        processes, samples = [], {}
        for namespec in names:
            pid = draw(st.integers(0, 4)) * 10 + _NAMESPECS.index(namespec) + 1
            p = proc(namespec, pid, draw(st.sampled_from(["RUNNING", "RUNNING", "STOPPED"])),
                     start=draw(st.sampled_from([0.0, 995.0])))
            processes.append(p)
            if draw(st.integers(0, 4)):  # now and then, no sample (vanished)
                units = tuple(Unit(pid + 100 * k, draw(memory), draw(st.sampled_from([0.0, 995.0])))
                              for k in range(draw(st.integers(1, 3))))
                samples[namespec] = Sample(max(u.bytes for u in units), "rss", len(units) - 1, units)
        busy = set(draw(st.lists(st.sampled_from(_NAMESPECS), max_size=2)))
        ticks.append((processes, samples, busy))
    return rules, ticks


@settings(max_examples=150, deadline=None)
@given(histories())
def test_invariants_of_decide(history: tuple[Rules, list]) -> None:
    rules, ticks = history
    strategy = rules.strategy
    state = PolicyState()
    for i, (processes, samples, busy) in enumerate(ticks):
        now = 1000.0 + 5 * i
        decision = policy.decide(processes, samples, rules, state, now, busy=frozenset(busy),
                                 self_names=frozenset({"memwatch:memwatch"}))
        by_name = {p.namespec: p for p in processes}
        # one judgement per process, at most one action per process
        assert [j.process for j in decision.judgements] == processes
        targets = acted(decision)
        assert len(targets) == len(set(targets))
        for action in decision.actions:
            target = action.target
            p = by_name[target.namespec]
            # never the listener, an excluded, a stopped or a busy process; always over the limit
            assert target.namespec != "memwatch:memwatch"
            assert not rules.excluded(p.group, p.name)
            assert p.statename == "RUNNING" and p.pid > 0
            assert target.namespec not in busy
            assert target.memory > target.limit
            assert target.pid == p.pid  # the supervised pid, whatever the action
            if isinstance(action, Restart):
                assert action.uptime == max(0.0, now - p.start)
            else:
                assert isinstance(action, SignalChild)
                assert action.child_pid != p.pid and action.signal == strategy.child_signal
        # rolling restarts: busy plus new restarts never exceed --max-parallel in a group
        for group in {p.group for p in processes}:
            restarts = [a for a in decision.actions
                        if isinstance(a, Restart) and a.target.group == group]
            in_flight = [n for n in busy if n.startswith(f"{group}:")]
            if restarts:
                assert len(restarts) + len(in_flight) <= strategy.max_parallel
        # acted on = judged ACT
        assert sorted(targets) == sorted(j.process.namespec for j in decision.judgements
                                         if j.verdict == Verdict.ACT)
        # the state remembers only processes listed this tick
        seen = set(by_name)
        assert {n for n, _ in decision.state.over_counts} <= seen
        assert set(decision.state.history) <= seen
        assert decision.state.warned <= seen
        # the restart budget holds within the window
        if strategy.max_restarts:
            for times in decision.state.history.values():
                in_window = [t for t in times if t > now - strategy.restart_window]
                assert len(in_window) <= strategy.max_restarts
        state = decision.state
