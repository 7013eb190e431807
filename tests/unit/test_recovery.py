"""listener.core.recovery: what a later tick does about a process we stopped, as a table."""

from __future__ import annotations

import pytest

from listener.core.recovery import BACKOFF_MAX, Next, backoff, next_step

OUR_STOP = 1000.0


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
    assert next_step(state, stop_time, OUR_STOP, start_asked) is expected


def test_a_stop_we_never_saw_complete_is_judged_by_the_start_alone() -> None:
    assert next_step("STOPPED", OUR_STOP + 60, None, False) is Next.START
    assert next_step("STOPPED", OUR_STOP + 60, None, True) is Next.LET_GO


def test_backoff_doubles_from_five_seconds_to_five_minutes() -> None:
    waits = [backoff(None)]
    for _ in range(8):
        waits.append(backoff(waits[-1]))
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert max(waits) == BACKOFF_MAX
