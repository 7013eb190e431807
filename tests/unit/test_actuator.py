"""The actuator against a scripted supervisord: races are races, failures are retried, and
nothing we stopped is forgotten. (The real-supervisord versions are in tests/integration.)"""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path

import pytest

from listener.actuator import Actuator
from listener.journal import Journal
from listener.model import ProcessInfo
from listener.policy import RESTART, Action
from listener.stats import Stats
from listener.supervisor import ABNORMAL_TERMINATION, ALREADY_STARTED, BAD_NAME, NOT_RUNNING, SPAWN_ERROR

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


def action() -> Action:
    return Action(kind=RESTART, group="web", name="web", pid=100, memory=500, limit=400,
                  measure="rss", rule="any", uptime=10.0, process_pid=100)


def run(sv: ScriptedSupervisor, journal: Journal, stats: Stats) -> Actuator:
    act = Actuator(lambda: sv, stats, sleep=lambda s: None, journal=journal, max_workers=1)  # type: ignore[arg-type,return-value]
    act.submit(action())
    assert act.shutdown(10)
    return act


@pytest.fixture
def stats() -> Stats:
    from listener.model import Sample
    from listener.policy import Judgement
    s = Stats()
    proc = ProcessInfo("web", "web", 100, "RUNNING", 0.0)
    s.observe([Judgement(proc, Sample(500, "rss", 0, ()), 400, "any", True, 1, "act")])
    return s


def counter(stats: Stats, name: str) -> int:
    p = stats.get(NS)
    assert p is not None
    return int(getattr(p, name))


def test_a_clean_restart_is_counted_and_leaves_no_journal_entry(stats, tmp_path: Path):
    sv = ScriptedSupervisor()
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert sv.calls == ["info", "stop", "start"]
    assert counter(stats, "restarts") == 1 and counter(stats, "restart_failures") == 0
    assert journal.entries() == [] and Journal(tmp_path / "j.json").entries() == []


def test_not_running_at_stop_is_a_race_nothing_is_started(stats, tmp_path: Path):
    sv = ScriptedSupervisor(stop_faults=[NOT_RUNNING])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert sv.calls == ["info", "stop"]
    assert counter(stats, "restart_failures") == 0 and journal.entries() == []


def test_removed_from_supervisord_at_start_is_a_race_and_clears_the_journal(stats, tmp_path: Path):
    sv = ScriptedSupervisor(start_faults=[BAD_NAME])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert counter(stats, "restart_failures") == 0 and journal.entries() == []


def test_already_started_at_start_counts_as_running(stats, tmp_path: Path):
    sv = ScriptedSupervisor(start_faults=[ALREADY_STARTED])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert counter(stats, "restart_failures") == 0 and journal.entries() == []


def test_spawn_errors_are_retried_with_backoff_then_left_for_the_next_tick(stats, tmp_path: Path):
    sv = ScriptedSupervisor(start_faults=[SPAWN_ERROR] * 4)
    journal = Journal(tmp_path / "j.json")
    act = run(sv, journal, stats)
    assert sv.calls.count("start") == 4
    assert counter(stats, "restart_failures") == 4
    assert act.stopped() == {NS}
    # a new listener (same journal file) sees the unfinished restart and finishes it
    again = Actuator(lambda: sv, stats, sleep=lambda s: None,  # type: ignore[arg-type,return-value]
                     journal=Journal(tmp_path / "j.json"), max_workers=1)
    assert again.busy() == {NS}
    again.retry_stopped()
    assert again.shutdown(10)
    assert sv.state == "RUNNING" and again.stopped() == frozenset()


def test_a_failed_start_after_abnormal_termination_is_counted_each_time(stats, tmp_path: Path):
    sv = ScriptedSupervisor(start_faults=[ABNORMAL_TERMINATION])
    journal = Journal(tmp_path / "j.json")
    run(sv, journal, stats)
    assert counter(stats, "restart_failures") == 1
    assert counter(stats, "restarts") == 1
    assert sv.state == "RUNNING" and journal.entries() == []


def test_a_process_that_changed_since_the_decision_is_left_alone(stats, tmp_path: Path):
    sv = ScriptedSupervisor(pid=999)
    run(sv, Journal(tmp_path / "j.json"), stats)
    assert sv.calls == ["info"]
    assert counter(stats, "restarts") == 0
