"""Whether supervisord had to force a stop we asked for (SIGKILL after stopwaitsecs): a warm
shutdown cut short (Celery's running tasks, a taskworker's results) may have lost work, so such
a restart is said and counted as such, never as a clean one.

supervisord's answers do not say it in so many words (getProcessInfo's `description` of a
STOPPED process is its stop time; `spawnerr` is about starts): the exit status says a signal
ended it, and the stop's length says that signal came after stopwaitsecs (recovery.forced_stop).
"""

from __future__ import annotations

import logging

from listener.core.recovery import forced_stop
from listener.log import fields
from listener.supervisord.rpc import Supervisor, SupervisorError
from listener.web.stats import Counter, Stats

log = logging.getLogger("memwatch.restarts")


def stop_wait(client: Supervisor, namespec: str) -> float | None:
    """The process's stopwaitsecs, asked before the stop; None if supervisord did not say."""
    try:
        return client.stop_waits().get(namespec)
    except SupervisorError:
        return None


def say_if_forced(client: Supervisor, stats: Stats, namespec: str, stop_seconds: float,
                  wait: float | None, ctx: dict[str, object]) -> None:
    """After our stop returned: log and count it if supervisord had to SIGKILL the process."""
    if wait is None or stop_seconds < wait:
        return  # supervisord did not say, or the stop ended before its SIGKILL was due
    try:
        exitstatus = client.process(namespec).exitstatus
    except SupervisorError:
        return  # unreachable: the loop says so; the stop itself went through
    if forced_stop(exitstatus, stop_seconds, wait):
        stats.count(namespec, Counter.FORCED_STOPS)
        log.error(f"stop forced: supervisord killed the process after stopwaitsecs={wait:g}s: "
                  "tasks may be lost", extra=fields(**ctx, stop_seconds=round(stop_seconds, 3)))
