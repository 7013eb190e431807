"""The event loop, replayed: scripted stdin histories through Daemon with small fakes of
supervisord, the sampler and the clock. Each test reads the protocol stream the loop wrote, the
calls it made to supervisord and the stats it kept."""

from __future__ import annotations

import io
import logging
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import replace

import pytest

from listener.actions.restarts import Restarter
from listener.config.settings import Config
from listener.config.values import ConfigError
from listener.core.model import Sample, Unit
from listener.core.rules import Rules, Strategy
from listener.daemon import Daemon
from listener.host.sampler import SampleResult
from listener.web.stats import Stats
from tests.fakes import Clock, FakeSampler, FakeSignaller, FakeSupervisor, Inline, Script, event

MiB = 1024**2
OK = "READY\nRESULT 2\nOK"
FAIL = "READY\nRESULT 4\nFAIL"


TICK = event()


class World:
    """A Daemon wired to fakes, with a clock that the script moves."""

    def __init__(self, config: Config, *namespecs: str,
                 reload: Callable[[], Config] | None = None) -> None:
        self.clock = Clock()
        self.supervisor = FakeSupervisor(*namespecs)
        self.sampler = FakeSampler()
        self.signaller = FakeSignaller()
        self.stats = Stats()
        self.restarter = Restarter(lambda: self.supervisor, self.stats,  # type: ignore[arg-type,return-value]
                                   executor=Inline(), sleep=lambda s: None,
                                   monotonic=self.clock, wall=self.clock)
        self.daemon = Daemon(config, self.supervisor, self.sampler, self.restarter,  # type: ignore[arg-type]
                             self.signaller, self.stats, reload=reload,  # type: ignore[arg-type]
                             clock=self.clock, timer=self.clock, environ={})

    def run(self, *steps: str | Callable[[], object]) -> str:
        out = io.StringIO()
        assert self.daemon.run(Script(*steps), out) == 0
        return out.getvalue()

    def process(self, namespec: str) -> dict[str, object]:
        (p,) = [p for p in self.stats.snapshot().processes if f"{p.group}:{p.process}" == namespec]
        return vars(p)


def limited(size: int = 100 * MiB, **strategy: object) -> Config:
    return Config(rules=Rules(any=size, strategy=Strategy(**strategy)))  # type: ignore[arg-type]


def test_every_event_is_answered_ready_then_ok_and_the_loop_ends_at_eof():
    world = World(limited(), "web:web")
    stream = world.run(TICK, event("PROCESS_STATE_RUNNING", "processname:web groupname:web"), TICK)
    assert stream == OK * 3 + "READY\n"
    assert world.stats.snapshot().events == {"malformed": 0, "TICK_5": 2, "PROCESS_STATE_RUNNING": 1}


def test_a_malformed_event_is_answered_fail_counted_and_the_next_one_ok():
    world = World(limited(), "web:web")
    stream = world.run("this is no header\n", TICK)
    assert stream == FAIL + OK + "READY\n"
    assert world.stats.snapshot().events["malformed"] == 1


def test_a_process_over_its_limit_is_stopped_then_started_and_counted():
    world = World(limited(), "web:web", "worker:worker")
    world.sampler.memory = {"web:web": 150 * MiB, "worker:worker": 50 * MiB}
    world.run(TICK)
    assert world.supervisor.actions == [("stop", "web:web"), ("start", "web:web")]
    assert world.process("web:web")["restarts"] == 1
    assert world.process("worker:worker")["restarts"] == 0
    assert world.process("web:web")["memory_bytes"] == 150 * MiB


def test_consecutive_samples_are_counted_across_ticks_before_acting():
    world = World(limited(consecutive=3), "web:web")
    world.sampler.memory = {"web:web": 150 * MiB}
    over_samples = []

    def seen() -> None:
        over_samples.append(world.process("web:web")["over_limit_samples"])

    world.run(TICK, seen, TICK, seen, TICK)
    assert over_samples == [1, 2]
    assert world.supervisor.actions == [("stop", "web:web"), ("start", "web:web")]


def test_supervisord_down_then_up_is_said_once_each_way_and_ticks_are_still_answered(caplog):
    world = World(limited(), "web:web")
    world.sampler.memory = {"web:web": 50 * MiB}
    up: list[int] = []

    def down() -> None:
        world.supervisor.up = False

    def back() -> None:
        up.append(world.stats.snapshot().supervisor_up)
        world.supervisor.up = True

    with caplog.at_level(logging.INFO, logger="memwatch"):
        stream = world.run(TICK, down, TICK, TICK, TICK, back, TICK)
    assert stream == OK * 5 + "READY\n"
    assert up == [0]
    assert world.stats.snapshot().supervisor_up == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("supervisord unreachable") == 1
    assert messages.count("supervisord reachable") == 2  # at start, and when it came back


def test_a_reload_applies_the_new_rules_at_the_next_tick_and_a_broken_one_keeps_the_old(caplog):
    configs: list[Config | Exception] = [ConfigError("memwatch.ini:3: bad"), limited(100 * MiB)]

    def reload() -> Config:
        result = configs.pop(0)
        if isinstance(result, Exception):
            raise result
        return result

    world = World(limited(200 * MiB), "web:web", reload=reload)
    world.sampler.memory = {"web:web": 150 * MiB}
    with caplog.at_level(logging.INFO, logger="memwatch"):
        world.run(TICK, world.daemon.request_reload, TICK, world.daemon.request_reload, TICK)
    assert world.supervisor.actions == [("stop", "web:web"), ("start", "web:web")]
    assert any(r.getMessage() == "config reload failed: keeping the old config" for r in caplog.records)
    assert world.process("web:web")["limit_bytes"] == 100 * MiB
    assert world.daemon.sampler.rules == limited(100 * MiB).rules  # measured by the new rules too


def test_a_dry_run_counts_every_tick_says_so_once_per_change_and_never_calls_supervisord(caplog):
    world = World(replace(limited(), dry_run=True), "web:web")
    world.sampler.memory = {"web:web": 150 * MiB}

    def shrink() -> None:
        world.sampler.memory["web:web"] = 50 * MiB

    def grow() -> None:
        world.sampler.memory["web:web"] = 150 * MiB

    with caplog.at_level(logging.INFO, logger="memwatch"):
        world.run(TICK, TICK, TICK, shrink, TICK, grow, TICK)
    assert world.supervisor.actions == []
    assert world.process("web:web")["dry_run_actions"] == 4
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dry run")]
    assert said == ["dry run: would restart", "dry run: would restart"]  # over, then over again


def test_stopping_says_what_it_waits_for_only_when_something_is_in_flight(caplog):
    world = World(limited(), "web:web")
    with caplog.at_level(logging.INFO, logger="memwatch"):
        world.run(TICK)
    messages = [r.getMessage() for r in caplog.records]
    assert "stopping" in messages and "stopping: waiting for in-flight restarts" not in messages


def test_a_child_over_its_limit_is_signalled_not_restarted():

    world = World(limited(children="each", child_signal=1), "web:web")
    big_child = Unit(555, 150 * MiB, 900.0)

    class TreeSampler(FakeSampler):
        def sample(self, processes, rules, now=None, pressure=False):  # type: ignore[no-untyped-def]
            units = (Unit(100, 10 * MiB, 900.0), big_child)
            return SampleResult({"web:web": Sample(150 * MiB, "rss", 1, units)}, Tally())

    world.daemon.sampler = TreeSampler()  # type: ignore[assignment]
    world.run(TICK)
    assert world.supervisor.actions == []
    (sent,) = world.signaller.sent
    assert (sent.child_pid, sent.signal, sent.target.pid) == (555, 1, 100)


def test_a_tick_that_fails_inside_is_logged_and_still_answered_ok(caplog):
    world = World(limited(), "web:web")
    world.sampler.fail = True
    with caplog.at_level(logging.ERROR, logger="memwatch"):
        stream = world.run(TICK, TICK)
    assert stream == OK * 2 + "READY\n"
    assert [r.getMessage() for r in caplog.records] == ["tick failed", "tick failed"]


def test_processes_that_disappear_lose_their_series():
    world = World(limited(), "web:web", "worker:worker")
    world.sampler.memory = {"web:web": 50 * MiB, "worker:worker": 50 * MiB}

    def remove_worker() -> None:
        del world.supervisor.table["worker:worker"]

    world.run(TICK, remove_worker, TICK)
    assert [p.process for p in world.stats.snapshot().processes] == ["web"]


@pytest.mark.parametrize("answered", [0, 1])
def test_stdout_closed_by_supervisord_ends_the_loop_cleanly(answered):
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            if self.tell() >= answered:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    world = World(limited(), "web:web")
    assert world.daemon.run(Script(TICK, TICK), Closed()) == 0


def test_with_state_events_ticks_use_the_table_and_list_only_when_it_cannot_be_trusted(caplog):
    world = World(limited(), "web:web")
    world.sampler.memory = {"web:web": 50 * MiB}
    serial = iter(range(1, 100))

    def web(state: str, before: str, pid: int = 0) -> str:
        payload = f"processname:web groupname:web from_state:{before}" + (f" pid:{pid}" if pid else "")
        return event(f"PROCESS_STATE_{state}", payload, next(serial))

    def tick() -> str:
        return event(poolserial=next(serial))

    listings: list[int] = []
    pids: list[object] = []

    def look() -> None:
        listings.append(world.supervisor.listings)
        pids.append(world.process("web:web")["pid"])

    with caplog.at_level(logging.INFO, logger="memwatch"):
        world.run(tick(), look,  # not subscribed yet: listed
                  web("STOPPING", "RUNNING", 100), web("STOPPED", "STOPPING", 100),
                  web("STARTING", "STOPPED"), web("RUNNING", "STARTING", 200),
                  tick(), look,  # the table says where web is: no listing
                  event(poolserial=next(serial) + 3),  # events dropped: the next tick lists
                  tick(), look)
    assert listings == [1, 1, 2]
    assert pids == [100, 200, 100]  # the fake supervisord never restarted web: the listing says so
    assert any(r.getMessage() == "process table listed again" and "dropped" in r.fields["reason"]
               for r in caplog.records if hasattr(r, "fields"))


def test_without_state_events_every_tick_lists_and_says_once_that_subscribing_would_help(caplog):
    world = World(limited(), "web:web")
    world.sampler.memory = {"web:web": 50 * MiB}
    with caplog.at_level(logging.INFO, logger="memwatch"):
        world.run(*[TICK] * 6)
    assert world.supervisor.listings == 6
    said = [r for r in caplog.records if r.getMessage().startswith("listing every process")]
    assert len(said) == 1 and "PROCESS_STATE" in said[0].getMessage()


def test_a_child_signal_decided_from_the_table_is_confirmed_with_supervisord_first(caplog):
    world = World(limited(children="each", child_signal=1), "web:web")  # supervisord: pid 100

    class TreeSampler(FakeSampler):
        """Whatever pid the tick believes web has, a big child of its own under it."""

        def sample(self, processes, rules, now=None, pressure=False):  # type: ignore[no-untyped-def]
            web = next(p for p in processes if p.namespec == "web:web")
            units = (Unit(web.pid, 10 * MiB, 900.0), Unit(web.pid + 1000, 150 * MiB, 900.0))
            return SampleResult({"web:web": Sample(150 * MiB, "rss", 1, units)}, Tally())

    world.daemon.sampler = TreeSampler()  # type: ignore[assignment]
    serial = iter(range(1, 100))
    # events the table believes: web restarted as pid 200; supervisord never did that
    moves = [event(f"PROCESS_STATE_{s}", f"processname:web groupname:web from_state:{b}"
                   + (f" pid:{p}" if p else ""), next(serial))
             for s, b, p in (("STOPPING", "RUNNING", 100), ("STOPPED", "STOPPING", 100),
                             ("STARTING", "STOPPED", 0), ("RUNNING", "STARTING", 200))]
    with caplog.at_level(logging.INFO, logger="memwatch"):
        world.run(event(poolserial=next(serial)), *moves, event(poolserial=next(serial)))
    # the first tick listed (pid 100) and signalled; the second, from the table (pid 200),
    # asked supervisord, which says 100: no signal, and the next tick lists
    assert [s.target.pid for s in world.signaller.sent] == [100]
    assert any(r.getMessage().startswith("child signal not sent") for r in caplog.records)
    assert "was not as the table had it" in (world.daemon.table.resync_reason() or "")
