"""Restarts against a scripted supervisord: races are races, failures are retried, and
nothing we stopped is forgotten. (The real-supervisord versions are in tests/integration.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from listener.actions.journal import Journal
from listener.actions.restarts import Restarter
from listener.core.model import Restart, Target
from listener.core.recovery import PRODUCTION, RetryTiming
from listener.core.rows import ProcessRow
from listener.supervisord.rpc import Fault
from listener.web.stats import Counter, Stats
from tests.fakes import Clock, FakeMailer, FakeSupervisor, Inline

ABNORMAL_TERMINATION, BAD_NAME, NOT_RUNNING, SPAWN_ERROR = (
    Fault.ABNORMAL_TERMINATION, Fault.BAD_NAME, Fault.NOT_RUNNING, Fault.SPAWN_ERROR)

NS = "web:web"


def scripted(**faults: object) -> FakeSupervisor:
    """supervisord running web:web (pid 100), with stop and start faults scripted."""
    return FakeSupervisor(NS, **faults)  # type: ignore[arg-type]


def action() -> Restart:
    return Restart(Target(group="web", name="web", pid=100, memory=500, limit=400, measure="rss",
                          rule="any"), uptime=10.0)


def restarter(sv: FakeSupervisor, journal: Journal, stats: Stats, clock: Clock | None = None,
              mailer: FakeMailer | None = None, timing: RetryTiming = PRODUCTION) -> Restarter:
    clock = clock or Clock()
    return Restarter(lambda: sv, stats, journal, mailer, executor=Inline(),  # type: ignore[arg-type,return-value]
                     sleep=lambda s: None, monotonic=clock, wall=clock, timing=timing)


def run(sv: FakeSupervisor, journal: Journal, stats: Stats) -> Restarter:
    act = restarter(sv, journal, stats)
    act.submit(action())
    assert act.shutdown(10)
    return act


@pytest.fixture
def stats() -> Stats:
    s = Stats()
    s.observe([ProcessRow("web", "web", 500, "rss", 400, 1, None)], now=0.0)
    return s


def counter(stats: Stats, counter: Counter) -> int:
    (p,) = [p for p in stats.snapshot().processes if f"{p.group}:{p.process}" == NS]
    return int(getattr(p, counter.value))


def test_a_clean_restart_is_counted_and_leaves_no_journal_entry(stats, tmp_path: Path):
    sv = scripted()
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert sv.verbs() == ["info", "stop", "start", "info"]  # done once supervisord says RUNNING
    assert counter(stats, Counter.RESTARTS) == 1 and counter(stats, Counter.RESTART_FAILURES) == 0
    assert journal.entries() == [] and Journal(tmp_path / "j.json").entries() == []


def test_not_running_at_stop_is_a_race_nothing_is_started(stats, tmp_path: Path):
    sv = scripted(stop_faults=[NOT_RUNNING])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert sv.verbs() == ["info", "stop"]
    assert counter(stats, Counter.RESTART_FAILURES) == 0 and journal.entries() == []


def test_removed_from_supervisord_at_start_is_a_race_and_clears_the_journal(stats, tmp_path: Path):
    sv = scripted(start_faults=[BAD_NAME])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert counter(stats, Counter.RESTART_FAILURES) == 0 and journal.entries() == []


def test_already_started_by_someone_else_and_running_is_a_finished_restart(stats, tmp_path: Path):
    sv = scripted(stop_faults=[])
    act = restarter(sv, Journal(tmp_path / "j.json"), stats)
    sv.stop = lambda namespec: sv.update(namespec, statename="RUNNING")  # type: ignore[method-assign]
    act.submit(action())  # a human started it between our stop and our start
    assert counter(stats, Counter.RESTART_FAILURES) == 0 and act.stopped() == frozenset()


def test_a_failed_start_stays_ours_and_is_retried_after_a_doubling_backoff(stats, tmp_path: Path):
    sv = scripted(start_faults=[SPAWN_ERROR, SPAWN_ERROR])
    clock = Clock()
    act = restarter(sv, Journal(tmp_path / "j.json"), stats, clock)
    act.submit(action())
    assert sv.verbs().count("start") == 1 and sv.state(NS) == "FATAL"
    assert counter(stats, Counter.RESTART_FAILURES) == 1 and act.stopped() == {NS}
    act.retry_stopped()  # at once: still inside the backoff
    assert sv.verbs().count("start") == 1
    clock.now += 5
    act.retry_stopped()
    assert sv.verbs().count("start") == 2 and counter(stats, Counter.RESTART_FAILURES) == 2
    clock.now += 5  # the second wait is 10 s
    act.retry_stopped()
    assert sv.verbs().count("start") == 2
    clock.now += 5
    act.retry_stopped()
    assert sv.state(NS) == "RUNNING" and act.stopped() == frozenset()
    assert counter(stats, Counter.RESTART_FAILURES) == 2 and counter(stats, Counter.RESTARTS) == 1


def test_the_waits_between_starts_are_the_retry_timing_given(stats, tmp_path: Path):
    sv = scripted(start_faults=[SPAWN_ERROR, SPAWN_ERROR])
    clock = Clock()
    timing = RetryTiming(backoff_first=0.5, backoff_max=0.75)
    act = restarter(sv, Journal(tmp_path / "j.json"), stats, clock, timing=timing)
    act.submit(action())
    clock.now += 0.4
    act.retry_stopped()
    assert sv.verbs().count("start") == 1
    clock.now += 0.1  # the first wait: 0.5 s
    act.retry_stopped()
    assert sv.verbs().count("start") == 2
    clock.now += 0.75  # the second: doubled, at most 0.75 s
    act.retry_stopped()
    assert sv.state(NS) == "RUNNING" and act.stopped() == frozenset()


def test_a_failed_start_is_mailed_once_until_the_process_runs_again(stats, tmp_path: Path):
    sv = scripted(start_faults=[SPAWN_ERROR, SPAWN_ERROR])
    clock, mailer = Clock(), FakeMailer()
    act = restarter(sv, Journal(tmp_path / "j.json"), stats, clock, mailer)
    act.submit(action())
    for wait in (5, 10):  # a second failure, then the start that works
        clock.now += wait
        act.retry_stopped()
    assert mailer.sent == [("start failed", NS)] and sv.state(NS) == "RUNNING"
    # a new restart of the same process starts afresh: the first wait, and a mail again
    sv.start_faults = [SPAWN_ERROR]
    act.submit(replace(action(), target=replace(action().target, pid=sv.table[NS].pid)))
    assert mailer.sent == [("start failed", NS), ("start failed", NS)]
    clock.now += 5
    act.retry_stopped()
    assert sv.state(NS) == "RUNNING" and sv.verbs().count("start") == 5


def test_backoff_after_our_stop_is_supervisords_retry_not_a_start_and_not_the_end(
        stats, tmp_path: Path):
    # supervisord's default startretries=3: a failed spawn puts it in BACKOFF, and our next
    # start is refused with ALREADY_STARTED while supervisord retries, until FATAL
    sv = scripted(start_faults=[ABNORMAL_TERMINATION], after_failed_start="BACKOFF")
    clock = Clock()
    act = restarter(sv, Journal(tmp_path / "j.json"), stats, clock)
    act.submit(action())
    clock.now += 5
    act.retry_stopped()  # BACKOFF: supervisord is at it; nothing to do, nothing forgotten
    assert sv.verbs().count("start") == 1 and act.stopped() == {NS}
    sv.update(NS, statename="FATAL")  # supervisord gave up
    clock.now += 5
    act.retry_stopped()
    assert sv.state(NS) == "RUNNING" and act.stopped() == frozenset()
    assert counter(stats, Counter.RESTART_FAILURES) == 1


def test_a_fatal_process_whose_stop_time_moved_on_is_still_ours(stats, tmp_path: Path):
    # each failed spawn moves supervisord's `stop` time forward: that is not a human's stop
    sv = scripted(start_faults=[SPAWN_ERROR])
    clock = Clock()
    act = restarter(sv, Journal(tmp_path / "j.json"), stats, clock)
    act.submit(action())
    sv.update(NS, stop=clock.now + 60)
    clock.now += 60
    act.retry_stopped()
    assert sv.state(NS) == "RUNNING" and act.stopped() == frozenset()


def test_a_human_stop_after_ours_ends_our_responsibility(stats, tmp_path: Path):
    sv = scripted(start_faults=[SPAWN_ERROR])
    clock = Clock()
    act = restarter(sv, Journal(tmp_path / "j.json"), stats, clock)
    act.submit(action())
    sv.update(NS, statename="STOPPED", stop=clock.now + 60)  # supervisorctl stop web:web
    clock.now += 60
    act.retry_stopped()
    assert sv.state(NS) == "STOPPED" and act.stopped() == frozenset()


def test_a_human_stop_during_supervisords_retries_keeps_the_old_stop_time_and_still_counts(
        stats, tmp_path: Path):
    # supervisorctl stop on a BACKOFF process: STOPPED, and supervisord leaves `stop` as it was
    sv = scripted(start_faults=[SPAWN_ERROR], after_failed_start="BACKOFF")
    clock = Clock()
    act = restarter(sv, Journal(tmp_path / "j.json"), stats, clock)
    act.submit(action())
    sv.update(NS, statename="STOPPED")
    clock.now += 5
    act.retry_stopped()
    assert sv.state(NS) == "STOPPED" and act.stopped() == frozenset()
    assert sv.verbs().count("start") == 1


def test_supervisord_shutting_down_is_not_a_failure_and_the_start_is_tried_later(
        stats, tmp_path: Path):
    sv = scripted(start_faults=[Fault.SHUTDOWN_STATE])
    sv.after_failed_start = "STOPPED"
    clock = Clock()
    act = restarter(sv, Journal(tmp_path / "j.json"), stats, clock)
    act.submit(action())
    assert counter(stats, Counter.RESTART_FAILURES) == 0 and act.stopped() == {NS}
    clock.now += 5
    act.retry_stopped()
    assert sv.state(NS) == "RUNNING" and act.stopped() == frozenset()


def test_a_new_listener_finishes_a_restart_left_in_the_journal(stats, tmp_path: Path):
    sv = scripted(start_faults=[SPAWN_ERROR])
    run(sv, Journal(tmp_path / "j.json"), stats)
    again = restarter(sv, Journal(tmp_path / "j.json"), stats)  # same file, a fresh listener
    assert again.busy() == {NS}
    again.retry_stopped()
    assert sv.state(NS) == "RUNNING" and again.stopped() == frozenset()


def test_a_process_that_changed_since_the_decision_is_left_alone(stats, tmp_path: Path):
    sv = scripted()
    sv.update(NS, pid=999)
    run(sv, Journal(tmp_path / "j.json"), stats)
    assert sv.verbs() == ["info"]
    assert counter(stats, Counter.RESTARTS) == 0
