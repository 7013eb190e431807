"""listener.supervisord.proctable: the process table kept from supervisord's events, with the moments it
must list everything again."""

from __future__ import annotations

from listener.core.model import ProcessInfo
from listener.supervisord.proctable import ProcessTable
from tests.fakes import Clocks

WEB = ProcessInfo("web", "web", 100, "RUNNING", 1000.0, listed_at=50.0)
CRON = ProcessInfo("cron", "cron", 0, "STOPPED", 0.0, stop=900.0)


def table(resync: float = 300.0) -> tuple[ProcessTable, Clocks]:
    clocks = Clocks()
    t = ProcessTable(resync, clocks.monotonic, clocks.wall, clocks.boot)
    return t, clocks


def listed(*processes: ProcessInfo) -> ProcessTable:
    t, _ = table()
    t.reset(processes)
    return t


def state(t: ProcessTable, namespec: str) -> tuple[str, int]:
    found = {p.namespec: p for p in t.processes()}[namespec]
    return found.statename, found.pid


def event(t: ProcessTable, name: str, namespec: str, from_state: str, pid: int | None = None) -> None:
    group, _, process = namespec.partition(":")
    payload = f"processname:{process} groupname:{group} from_state:{from_state}"
    t.apply(f"PROCESS_STATE_{name}", payload + (f" pid:{pid}" if pid else ""))


def test_at_start_it_lists_and_learns_the_subscription_from_the_first_state_event() -> None:
    t, _ = table()
    assert (t.subscribed, t.resync_reason()) == (False, "start")
    event(t, "RUNNING", "web:web", "STARTING", 100)  # before any listing: nothing to move
    assert t.subscribed
    t.reset([WEB, CRON])
    assert t.resync_reason() is None
    assert sorted(p.namespec for p in t.processes()) == ["cron:cron", "web:web"]


def test_a_restart_seen_through_its_events_ends_as_supervisord_would_list_it() -> None:
    t, clocks = table()
    t.reset([WEB, CRON])
    clocks.wall.now = 3000.0
    event(t, "STOPPING", "web:web", "RUNNING", 100)
    assert state(t, "web:web") == ("STOPPING", 100)
    event(t, "STOPPED", "web:web", "STOPPING", 100)
    assert state(t, "web:web") == ("STOPPED", 0)
    event(t, "STARTING", "web:web", "STOPPED")
    event(t, "RUNNING", "web:web", "STARTING", 222)
    web = {p.namespec: p for p in t.processes()}["web:web"]
    assert (web.statename, web.pid, web.start, web.stop) == ("RUNNING", 222, 3000.0, 3000.0)
    assert web.listed_at == 500.0  # a pid that started after this is not this process
    assert t.resync_reason() is None  # every event followed from the table


def test_a_crash_and_respawn_follow_from_the_table() -> None:
    t = listed(WEB)
    event(t, "EXITED", "web:web", "RUNNING", 100)
    event(t, "STARTING", "web:web", "EXITED")
    event(t, "BACKOFF", "web:web", "STARTING")
    event(t, "STARTING", "web:web", "BACKOFF")
    event(t, "RUNNING", "web:web", "STARTING", 101)
    assert state(t, "web:web") == ("RUNNING", 101)
    assert t.resync_reason() is None


def test_an_event_that_does_not_follow_from_the_table_asks_for_a_listing() -> None:
    t = listed(WEB)
    event(t, "STOPPED", "web:web", "STOPPING", 100)  # the table never saw STOPPING
    assert t.resync_reason() == "web:web went STOPPING->STOPPED, the table had it RUNNING"
    t.reset([WEB])
    assert t.resync_reason() is None


def test_a_gap_in_poolserial_is_events_dropped_and_asks_for_a_listing() -> None:
    t = listed(WEB)
    for serial in (5, 6, 6, 7):  # 6 again: an event sent again after a FAIL, not a gap
        t.saw({"poolserial": str(serial)})
    assert t.resync_reason() is None
    t.saw({"poolserial": "10"})
    assert "2 events dropped by supervisord" in (t.resync_reason() or "")


def test_groups_added_are_listed_and_groups_removed_dropped() -> None:
    t = listed(WEB, CRON)
    t.apply("PROCESS_GROUP_REMOVED", "groupname:cron")
    assert [p.namespec for p in t.processes()] == ["web:web"]
    assert t.resync_reason() is None
    t.apply("PROCESS_GROUP_ADDED", "groupname:jobs")
    assert t.resync_reason() == "group jobs added"


def test_a_new_process_of_an_added_group_starts_from_stopped() -> None:
    t = listed(WEB)
    event(t, "STARTING", "jobs:jobs_00", "STOPPED")
    event(t, "RUNNING", "jobs:jobs_00", "STARTING", 300)
    assert state(t, "jobs:jobs_00") == ("RUNNING", 300)
    assert t.resync_reason() is None


def test_it_lists_again_every_resync_seconds_and_after_supervisord_was_unreachable() -> None:
    t, clocks = table(resync=60.0)
    t.reset([WEB])
    clocks.monotonic.now += 59.0
    assert t.resync_reason() is None
    clocks.monotonic.now += 1.0
    assert t.resync_reason() == "periodic resync (60s)"
    t.reset([WEB])
    t.unreachable()
    assert t.resync_reason() == "supervisord was unreachable"
