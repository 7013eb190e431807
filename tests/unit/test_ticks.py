"""The missing-TICK watch, on an injected clock: said once, cleared when TICKs come."""

from __future__ import annotations

from listener.supervisord.ticks import TickWatch, tick_problem
from listener.web.stats import Stats


def test_nothing_is_said_before_the_timeout() -> None:
    assert tick_problem(64.9, 65.0, 0, 0, "[eventlistener:memwatch]") == ""


def test_no_tick_since_the_start_names_the_section_and_the_fix() -> None:
    said = tick_problem(70.0, 65.0, 0, 12, "[eventlistener:memwatch]")
    assert "within 65s of the start" in said and "12 other events came" in said
    assert "add TICK_5 to events= in [eventlistener:memwatch]" in said


def test_ticks_that_stop_are_said_differently() -> None:
    assert "of the last one" in tick_problem(70.0, 65.0, 3, 0, "x")


def test_the_watch_says_it_once_and_clears_it_when_a_tick_comes() -> None:
    now = [0.0]
    stats = Stats()
    watch = TickWatch(10.0, stats, "[eventlistener:m]", clock=lambda: now[0])
    watch.saw("PROCESS_STATE_RUNNING")
    assert watch.check() == ""
    now[0] = 11.0
    assert watch.check() and stats.snapshot().tick_problem
    watch.saw("TICK_5")
    assert watch.check() == "" and stats.snapshot().tick_problem == ""
