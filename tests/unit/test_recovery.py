"""listener.core.recovery: what a later tick does about a process we stopped, as a table."""

from __future__ import annotations

import pytest

from listener.core.recovery import Next, RetryTiming, next_step

OUR_STOP = 1000.0
MARGIN = RetryTiming().human_margin


@pytest.mark.parametrize(("state", "stop_time", "start_asked", "expected"), [
    ("RUNNING", 0.0, True, Next.DONE),
    ("STARTING", 0.0, True, Next.WAIT),  # supervisord starting it
    ("BACKOFF", 0.0, True, Next.WAIT),  # supervisord retrying by itself
    ("STOPPING", 0.0, False, Next.WAIT),
    ("FATAL", OUR_STOP + 60, True, Next.START),  # failed spawns move the stop time: still ours
    ("EXITED", OUR_STOP + 60, True, Next.START),
    ("STOPPED", OUR_STOP, False, Next.START),  # our own stop, the start never asked (killed)
    ("STOPPED", OUR_STOP + 1, False, Next.START),  # within the margin: our stop still
    ("STOPPED", OUR_STOP + 60, False, Next.LET_GO),  # stopped again, later: someone else
    ("STOPPED", OUR_STOP, True, Next.LET_GO),  # stopped after our start (in BACKOFF: old time)
])
def test_next_step(state: str, stop_time: float, start_asked: bool, expected: Next) -> None:
    assert next_step(state, stop_time, OUR_STOP, start_asked, MARGIN) is expected


def test_a_stop_we_never_saw_complete_is_judged_by_the_start_alone() -> None:
    assert next_step("STOPPED", OUR_STOP + 60, None, False, MARGIN) is Next.START
    assert next_step("STOPPED", OUR_STOP + 60, None, True, MARGIN) is Next.LET_GO


def test_the_human_margin_is_the_timings() -> None:
    assert next_step("STOPPED", OUR_STOP + 2, OUR_STOP, False, human_margin=5.0) is Next.START
    assert next_step("STOPPED", OUR_STOP + 2, OUR_STOP, False, human_margin=1.0) is Next.LET_GO


def backoffs(timing: RetryTiming, count: int) -> list[float]:
    waits = [timing.backoff(None)]
    while len(waits) < count:
        waits.append(timing.backoff(waits[-1]))
    return waits


def test_backoff_doubles_from_five_seconds_to_five_minutes_by_default() -> None:
    assert backoffs(RetryTiming(), 9) == [5, 10, 20, 40, 80, 160, 300, 300, 300]


def test_backoff_follows_the_timing_it_is_given() -> None:
    assert backoffs(RetryTiming(backoff_first=0.25, backoff_max=1.0), 5) == [0.25, 0.5, 1, 1, 1]
