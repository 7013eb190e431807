"""Whether TICK events arrive. The listener acts only on a TICK, and blocks on stdin between
events: a listener whose `events=` lacks TICK_5 (or TICK_60) would wait in silence for good.

supervisord does not tell a listener what it is subscribed to: getAllConfigInfo leaves `events=`
out, and its configuration file (found through the parent's command line) may have been edited
since supervisord read it. What is reliable is what arrives: a thread next to the loop says so
once when no TICK came within --tick-timeout of the start or of the last one (the default, 65 s,
allows TICK_60), and once again when TICKs arrive."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from listener.log import fields
from listener.web.stats import Stats

log = logging.getLogger("memwatch.daemon")

POLL_SECONDS = 1.0


def tick_problem(waited: float, timeout: float, ticks: int, others: int, section: str) -> str:
    """What is wrong, in one line, after `waited` seconds without a TICK; "" when nothing is."""
    if waited < timeout:
        return ""
    if ticks:
        return (f"no TICK event within {timeout:g}s of the last one: "
                "supervisord stopped sending events, or the listener is stuck in one")
    got = f"{others} other events came, so it is subscribed to others; " if others else ""
    return (f"no TICK event within {timeout:g}s of the start: the "
            f"listener acts only on TICK events; {got}add TICK_5 to events= in {section} "
            "(events=TICK_5,PROCESS_STATE,PROCESS_GROUP), then supervisorctl update")


def section(environ: Mapping[str, str]) -> str:
    """The listener's section in supervisord's configuration, as the problem names it."""
    name = environ.get("SUPERVISOR_PROCESS_NAME")
    return f"[eventlistener:{name}]" if name else "its [eventlistener:...] section"


class TickWatch:
    def __init__(self, timeout: float, stats: Stats, section: str = "its [eventlistener:...]",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._stats = stats
        self._section = section
        self._clock = clock
        self._lock = threading.Lock()
        self._since = clock()  # the start, or the last TICK
        self._ticks = self._others = 0
        self._problem = ""
        self._stop = threading.Event()

    def saw(self, eventname: str) -> None:
        """Called by the loop for every event (cheap: a lock and a clock read)."""
        with self._lock:
            if not eventname.startswith("TICK"):
                self._others += 1
                return
            self._ticks += 1
            self._since = self._clock()
            had, self._problem = self._problem, ""
        if had:
            self._stats.tick_problem("")
            log.info("TICK events arrive", extra=fields(event=eventname))

    def check(self) -> str:
        """Say a new problem once (log and Stats); the problem now."""
        with self._lock:
            problem = tick_problem(self._clock() - self._since, self.timeout, self._ticks,
                                   self._others, self._section)
            new = bool(problem) and not self._problem
            self._problem = problem if problem else self._problem
        if new:
            self._stats.tick_problem(problem)
            log.error(problem)
        return problem

    def start(self) -> None:
        threading.Thread(target=self._run, name="memwatch-ticks", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.check()
