"""What to do about a process we stopped that is not running again: pure decisions, no I/O.

Ours until it runs: BACKOFF and STARTING are supervisord starting it (wait), FATAL and EXITED
are supervisord having given up (start it again, after a backoff). Only someone else's stop
ends our responsibility: STOPPED after we asked for a start (a stop during BACKOFF keeps
supervisord's old stop time), or with a stop time well after ours.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from listener.core.states import RUNNING, STARTING_UP, STOPPED, STOPPING


@dataclass(frozen=True)
class RetryTiming:
    """The times of the retry path, in seconds. The defaults are production's."""

    backoff_first: float = 5.0  # before a failed start is tried again; doubles each time
    backoff_max: float = 300.0
    human_margin: float = 5.0  # a stop this long after ours was someone else's

    def backoff(self, previous: float | None) -> float:
        """The wait before the next start after a failed one: the first, then doubling, at most
        backoff_max (by default 5 s, 10 s, 20 s... up to 5 minutes)."""
        return self.backoff_first if previous is None else min(previous * 2, self.backoff_max)


PRODUCTION = RetryTiming()


class Next(enum.Enum):
    DONE = "runs again"
    WAIT = "a start or a stop is under way"
    LET_GO = "stopped by someone else"
    START = "start it"


def next_step(state: str, stop_time: float, our_stop: float | None, start_asked: bool,
              human_margin: float) -> Next:
    """state and stop_time as supervisord says now; our_stop: when our stop completed (None if
    we never saw it complete); start_asked: we asked for a start since our stop; a stop more
    than human_margin after ours was someone else's."""
    if state == RUNNING:
        return Next.DONE
    if state in STARTING_UP or state == STOPPING:
        return Next.WAIT
    if state == STOPPED and (start_asked or (
            our_stop is not None and stop_time > our_stop + human_margin)):
        return Next.LET_GO
    return Next.START


def gave_up(state: str) -> bool:
    """After a start: supervisord ran out of its own retries (FATAL, EXITED...)."""
    return state != RUNNING and state not in STARTING_UP



KILLED_BY_A_SIGNAL = -1  # supervisord's exitstatus for a process that a signal ended


def forced_stop(exitstatus: int, stop_seconds: float, stopwaitsecs: float) -> bool:
    """Whether supervisord had to force a stop: its SIGKILL comes stopwaitsecs after it sent
    the stopsignal, so a stop that took at least that long (timed from before the request) and
    ended by a signal is one (a program that dies of the stopsignal itself ends at once; one
    that stops cleanly exits with a status of its own)."""
    return exitstatus == KILLED_BY_A_SIGNAL and stop_seconds >= stopwaitsecs
