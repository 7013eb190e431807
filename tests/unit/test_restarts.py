"""Restarts against a scripted supervisord: races are races, failures are retried, and
nothing we stopped is forgotten. (The real-supervisord versions are in tests/integration.)"""

from __future__ import annotations

import xmlrpc.client
from concurrent.futures import Executor, Future
from pathlib import Path

import pytest

from listener.journal import Journal
from listener.model import ProcessInfo, Restart, Target
from listener.restarts import Restarter
from listener.stats import Counter, ProcessRow, Stats
from listener.supervisor import Fault

ABNORMAL_TERMINATION, ALREADY_STARTED, BAD_NAME, NOT_RUNNING, SPAWN_ERROR = (
    Fault.ABNORMAL_TERMINATION, Fault.ALREADY_STARTED, Fault.BAD_NAME, Fault.NOT_RUNNING,
    Fault.SPAWN_ERROR)

NS = "web:web"


class ScriptedSupervisor:
    """Answers getProcessInfo from `states`; stop/start raise the next scripted fault, if any."""

    display_url = "unix:///scripted"

    def __init__(self, stop_faults=(), start_faults=(), state="RUNNING", pid=100) -> None:
        self.stop_faults = list(stop_faults)
        self.start_faults = list(start_faults)
        self.state = state
        self.pid = pid
        self.calls: list[str] = []

    def process(self, namespec: str) -> ProcessInfo:
        self.calls.append("info")
        if self.state == "GONE":
            raise xmlrpc.client.Fault(BAD_NAME, "BAD_NAME: web:web")
        return ProcessInfo("web", "web", self.pid, self.state, 0.0)

    def stop(self, namespec: str) -> None:
        self.calls.append("stop")
        if self.stop_faults:
            raise xmlrpc.client.Fault(self.stop_faults.pop(0), "scripted")
        self.state = "STOPPED"

    def start(self, namespec: str) -> None:
        self.calls.append("start")
        if self.start_faults:
            code = self.start_faults.pop(0)
            if code == BAD_NAME:
                self.state = "GONE"
            raise xmlrpc.client.Fault(code, "scripted")
        self.state, self.pid = "RUNNING", self.pid + 1


class Inline(Executor):
    """Runs each piece of work at once, in the caller's thread: a deterministic pool."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def action() -> Restart:
    return Restart(Target(group="web", name="web", pid=100, memory=500, limit=400, measure="rss",
                          rule="any"), uptime=10.0)


def restarter(sv: ScriptedSupervisor, journal: Journal, stats: Stats) -> Restarter:
    return Restarter(lambda: sv, stats, journal, executor=Inline(), sleep=lambda s: None)  # type: ignore[arg-type,return-value]


def run(sv: ScriptedSupervisor, journal: Journal, stats: Stats) -> Restarter:
    act = restarter(sv, journal, stats)
    act.submit(action())
    assert act.shutdown(10)
    return act


@pytest.fixture
def stats() -> Stats:
    s = Stats()
    s.observe([ProcessRow("web", "web", 500, "rss", 400, 1, None)])
    return s


def counter(stats: Stats, counter: Counter) -> int:
    (p,) = [p for p in stats.snapshot().processes if f"{p.group}:{p.process}" == NS]
    return int(getattr(p, counter.value))


def test_a_clean_restart_is_counted_and_leaves_no_journal_entry(stats, tmp_path: Path):
    sv = ScriptedSupervisor()
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert sv.calls == ["info", "stop", "start"]
    assert counter(stats, Counter.RESTARTS) == 1 and counter(stats, Counter.RESTART_FAILURES) == 0
    assert journal.entries() == [] and Journal(tmp_path / "j.json").entries() == []


def test_not_running_at_stop_is_a_race_nothing_is_started(stats, tmp_path: Path):
    sv = ScriptedSupervisor(stop_faults=[NOT_RUNNING])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert sv.calls == ["info", "stop"]
    assert counter(stats, Counter.RESTART_FAILURES) == 0 and journal.entries() == []


def test_removed_from_supervisord_at_start_is_a_race_and_clears_the_journal(stats, tmp_path: Path):
    sv = ScriptedSupervisor(start_faults=[BAD_NAME])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert counter(stats, Counter.RESTART_FAILURES) == 0 and journal.entries() == []


def test_already_started_at_start_counts_as_running(stats, tmp_path: Path):
    sv = ScriptedSupervisor(start_faults=[ALREADY_STARTED])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert counter(stats, Counter.RESTART_FAILURES) == 0 and journal.entries() == []


def test_spawn_errors_are_retried_with_backoff_then_left_for_the_next_tick(stats, tmp_path: Path):
    sv = ScriptedSupervisor(start_faults=[SPAWN_ERROR] * 4)
    journal = Journal(tmp_path / "j.json")
    act = run(sv, journal, stats)
    assert sv.calls.count("start") == 4
    assert counter(stats, Counter.RESTART_FAILURES) == 4
    assert act.stopped() == {NS}
    # a new listener (same journal file) sees the unfinished restart and finishes it
    again = restarter(sv, Journal(tmp_path / "j.json"), stats)
    assert again.busy() == {NS}
    again.retry_stopped()
    assert again.shutdown(10)
    assert sv.state == "RUNNING" and again.stopped() == frozenset()


def test_a_failed_start_after_abnormal_termination_is_counted_each_time(stats, tmp_path: Path):
    sv = ScriptedSupervisor(start_faults=[ABNORMAL_TERMINATION])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert counter(stats, Counter.RESTART_FAILURES) == 1
    assert counter(stats, Counter.RESTARTS) == 1
    assert sv.state == "RUNNING" and journal.entries() == []


def test_a_process_that_changed_since_the_decision_is_left_alone(stats, tmp_path: Path):
    sv = ScriptedSupervisor(pid=999)
    run(sv, Journal(tmp_path / "j.json"), stats)
    assert sv.calls == ["info"]
    assert counter(stats, Counter.RESTARTS) == 0
