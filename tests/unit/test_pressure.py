"""Host memory pressure: entered and left with hysteresis and a minimum time, and, under it, the
one process furthest over its pressure-limit replaced, one at a time per host."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.core import policy
from listener.core.model import ProcessInfo, Restart, Sample, SignalChild, Unit
from listener.core.policy import PolicyState, Verdict
from listener.core.pressure import (
    HostMemory,
    Pressure,
    PressureSettings,
    next_pressure,
    parse_meminfo,
    parse_psi,
)
from listener.core.rules import Rules, Strategy

MiB = 2**20
GiB = 2**30
PSI20 = PressureSettings(psi_some=20.0)


def psi(some10: float) -> HostMemory:
    return HostMemory(some10=some10)


def test_pressure_is_entered_at_the_threshold_and_left_well_below_it_after_a_minute() -> None:
    state = Pressure()
    timeline = [  # (now, PSI some avg10, under pressure after)
        (0, 5.0, False),
        (5, 20.0, True),  # entered at the threshold
        (10, 3.0, True),  # well below, but not a minute yet
        (60, 15.0, True),  # a minute, but not well below (half of 20 is 10)
        (65, 9.0, False),  # left
        (70, 19.9, False),  # under the threshold: not entered again
    ]
    for now, some10, active in timeline:
        state = next_pressure(state, psi(some10), PSI20, float(now))
        assert state.active is active, now


def test_available_memory_enters_below_its_floor_and_leaves_above_125_percent() -> None:
    floor = PressureSettings(available_below=2 * GiB)
    state = next_pressure(Pressure(), HostMemory(available=GiB), floor, 0.0)
    assert state.active and "MemAvailable 1024 MiB < 2048 MiB" in state.reason
    state = next_pressure(state, HostMemory(available=int(2.4 * GiB)), floor, 100.0)
    assert state.active  # above the floor, not above 1.25x it
    assert not next_pressure(state, HostMemory(available=3 * GiB), floor, 100.0).active


def test_nothing_read_or_nothing_set_changes_nothing() -> None:
    entered = next_pressure(Pressure(), psi(50.0), PSI20, 0.0)
    assert next_pressure(entered, None, PSI20, 500.0) == entered
    assert next_pressure(Pressure(), psi(99.0), PressureSettings(), 0.0) == Pressure()


@given(st.lists(st.floats(0, 100), min_size=1, max_size=200))
def test_a_host_on_the_edge_does_not_flap(readings: list[float]) -> None:
    """Whatever PSI does, the state changes at most once a minute."""
    state, changes, now = Pressure(), [], 0.0
    for some10 in readings:
        now += 5.0
        after = next_pressure(state, psi(some10), PSI20, now)
        if after.active != state.active:
            changes.append(now)
        state = after
    assert all(b - a >= 60.0 for a, b in zip(changes[::2], changes[1::2], strict=False))


@given(st.text(max_size=400))
def test_unreadable_kernel_files_give_nothing_not_an_error(text: str) -> None:
    parse_psi(text)
    parse_meminfo(text)


def test_the_kernels_files_are_read() -> None:
    assert parse_psi("some avg10=1.50 avg60=0.25 avg300=0.00 total=123\n"
                     "full avg10=0.50 avg60=0.00 avg300=0.00 total=45\n") == {
        "some10": 1.5, "some60": 0.25, "full10": 0.5, "full60": 0.0}
    assert parse_meminfo("MemTotal:       24684292 kB\nMemFree: 1 kB\n"
                         "MemAvailable:   24213360 kB\n") == (24684292 * 1024, 24213360 * 1024)


# --- under pressure, the policy ---

NORMAL = 400 * MiB
RULES = Rules(any=NORMAL, strategy=Strategy(pressure_limit=200 * MiB, max_restarts=3))


def proc(name: str, pid: int) -> ProcessInfo:
    return ProcessInfo(name, name, pid, "RUNNING", 0.0)


WEB, WORKER, CRON = proc("web", 10), proc("worker", 20), proc("cron", 30)


def memory(**mib: int) -> dict[str, Sample]:
    return {f"{n}:{n}": Sample(m * MiB, "rss", 0, ()) for n, m in mib.items()}


class Host:
    def __init__(self, rules: Rules = RULES) -> None:
        self.rules, self.state = rules, PolicyState()

    def tick(self, now: float, samples: dict[str, Sample], pressure: bool,
             busy: frozenset[str] = frozenset()) -> policy.Decision:
        decision = policy.decide([WEB, WORKER, CRON], samples, self.rules, self.state, now,
                                 busy=busy, pressure=pressure)
        self.state = decision.state
        return decision


def acted(decision: policy.Decision) -> list[str]:
    return [a.target.namespec for a in decision.actions]


def test_under_pressure_the_one_furthest_over_its_pressure_limit_goes_first() -> None:
    host = Host()
    samples = memory(web=300, worker=350, cron=100)  # all under the usual 400
    assert acted(host.tick(1000.0, samples, pressure=False)) == []
    decision = host.tick(1005.0, samples, pressure=True)
    (action,) = decision.actions
    assert isinstance(action, Restart) and action.target.namespec == "worker:worker"
    assert action.target.limit == 200 * MiB and "under host memory pressure" in action.target.rule
    verdicts = {j.process.namespec: j.verdict for j in decision.judgements}
    assert verdicts == {"web:web": Verdict.OK, "worker:worker": Verdict.ACT, "cron:cron": Verdict.OK}


def test_one_at_a_time_per_host_and_at_most_one_a_minute() -> None:
    host = Host()
    samples = memory(web=300, worker=350, cron=100)
    assert acted(host.tick(1000.0, samples, pressure=True)) == ["worker:worker"]
    # the worker is still restarting: nothing else, whatever the time
    assert acted(host.tick(1100.0, samples, pressure=True, busy=frozenset({"worker:worker"}))) == []
    after = memory(web=300, worker=120, cron=100)
    assert acted(host.tick(1030.0 + 5, after, pressure=True)) == []  # within the minute
    assert acted(host.tick(1065.0, after, pressure=True)) == ["web:web"]
    assert acted(host.tick(1200.0, memory(web=150, worker=120, cron=100), pressure=True)) == []


def test_no_pressure_or_no_pressure_limit_no_action() -> None:
    samples = memory(web=300, worker=350, cron=100)
    assert acted(Host().tick(1000.0, samples, pressure=False)) == []
    plain = replace(RULES, strategy=Strategy())
    assert acted(Host(plain).tick(1000.0, samples, pressure=True)) == []


def test_over_the_usual_limit_is_the_usual_path_and_pressure_adds_one_more_at_most() -> None:
    decision = Host().tick(1000.0, memory(web=500, worker=350, cron=300), pressure=True)
    assert acted(decision) == ["web:web", "worker:worker"]  # web as always; worker for pressure


def test_a_worker_over_its_pressure_limit_is_signalled_as_its_strategy_says() -> None:
    rules = Rules(any=NORMAL, strategy=Strategy(children="each", child_signal=1,
                                                pressure_limit=200 * MiB))
    units = (Unit(10, 50 * MiB, 0.0), Unit(11, 250 * MiB, 0.0), Unit(12, 300 * MiB, 0.0))
    samples = {"web:web": Sample(300 * MiB, "rss", 2, units)}
    decision = policy.decide([WEB], samples, rules, PolicyState(), 1000.0, pressure=True)
    (action,) = decision.actions
    assert isinstance(action, SignalChild) and action.child_pid == 12
    # signalled: draining next tick, never signalled again, and in flight for the host
    again = policy.decide([WEB], samples, rules, decision.state, 1065.0, pressure=True)
    assert again.actions == () and again.judgements[0].verdict is Verdict.DRAINING


@pytest.mark.parametrize("max_restarts, expected", [(0, ["worker:worker"]), (1, [])])
def test_pressure_actions_spend_the_restart_budget(max_restarts: int, expected: list[str]) -> None:
    rules = Rules(any=NORMAL, strategy=Strategy(pressure_limit=200 * MiB, max_restarts=1))
    state = PolicyState(history={"worker:worker": (990.0,)} if max_restarts else {})
    decision = policy.decide([WEB, WORKER, CRON], memory(web=100, worker=350, cron=100), rules,
                             state, 1000.0, pressure=True)
    assert acted(decision) == expected
