"""Carries out the policy's actions off the event loop.

A restart is stop then start (supervisord has no restartProcess); each runs in a worker
thread with its own XML-RPC client, so a slow stop never delays the answer to an event.
Every stop is written to the journal first; a process we stopped stays there until it runs
again, and is retried with backoff, on later ticks too, until it runs or a human takes it
over: a watchdog must never turn a leak into an outage. The journal outlives the listener, so
a restart cut short by SIGKILL or the OOM killer is finished by the next run.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psutil

from listener.journal import Journal
from listener.log import fields
from listener.model import RUNNING
from listener.notify import Mailer
from listener.policy import Action
from listener.stats import Stats
from listener.supervisor import BAD_NAME, RACE_FAULTS, Supervisor, SupervisorError, describe_error
from listener.units import format_size

log = logging.getLogger("memwatch.actuator")

START_RETRY_DELAYS = (1.0, 2.0, 4.0)  # within one attempt; later ticks keep trying
HUMAN_MARGIN = 5.0  # a stop this long after ours was someone else's


class Actuator:
    def __init__(self, connect: Callable[[], Supervisor], stats: Stats,
                 mailer: Mailer | None = None, mail_uptime: float | None = None,
                 max_workers: int = 8, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, journal: Journal | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self._connect = connect
        self._stats = stats
        self._mailer = mailer
        self._mail_uptime = mail_uptime
        self._sleep = sleep
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._journal = journal or Journal(None)  # stopped by us, not yet running again
        self._wall = wall
        left = self._journal.entries()
        if left:
            log.warning("finishing restarts left unfinished by a previous run", extra=fields(
                processes=",".join(sorted(e.namespec for e in left))))
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="memwatch-act")

    # --- what the loop asks ---

    def busy(self) -> frozenset[str]:
        """Processes with a restart in flight or waiting for a successful start."""
        stopped = {e.namespec for e in self._journal.entries()}
        with self._lock:
            return frozenset(self._busy | stopped)

    def stopped(self) -> frozenset[str]:
        return frozenset(e.namespec for e in self._journal.entries())

    def submit(self, action: Action) -> None:
        if action.signal is not None:
            self._signal_child(action)
            return
        with self._lock:
            if action.namespec in self._busy:
                return
            self._busy.add(action.namespec)
        self._pool.submit(self._guarded, self._restart, action.namespec, action)

    def retry_stopped(self) -> None:
        """Try again to start what we stopped and could not start (called every tick)."""
        stopped = [e.namespec for e in self._journal.entries()]
        with self._lock:
            pending = [n for n in stopped if n not in self._busy]
            self._busy.update(pending)
        for namespec in pending:
            self._pool.submit(self._guarded, self._start_again, namespec)

    def shutdown(self, timeout: float) -> bool:
        """Take no new work; wait up to `timeout` for in-flight restarts. True if all done."""
        deadline = self._clock() + timeout
        self._pool.shutdown(wait=False, cancel_futures=False)
        while self._clock() < deadline:
            with self._lock:
                if not self._busy:
                    return True
            self._sleep(0.05)
        return False

    # --- the work, in pool threads ---

    def _client(self) -> Supervisor:
        client: Supervisor | None = getattr(self._local, "client", None)
        if client is None:
            client = self._connect()
            self._local.client = client
        return client

    def _guarded(self, work: Callable[..., None], namespec: str, *args: object) -> None:
        try:
            work(namespec, *args)
        except Exception:  # never lose the busy slot, never kill the pool thread silently
            log.exception("unexpected error while acting", extra=fields(process=namespec))
        finally:
            with self._lock:
                self._busy.discard(namespec)

    def _restart(self, namespec: str, action: Action) -> None:
        client = self._client()
        ctx = {"process": namespec, "pid": action.pid,
               action.measure: format_size(action.memory), "limit": format_size(action.limit),
               "rule": action.rule}
        try:
            info = client.process(namespec)
        except SupervisorError as exc:
            self._fail("could not look up process before restart", namespec, exc, ctx)
            return
        if info.pid != action.pid or info.statename != RUNNING:
            log.info("process changed since the decision; not restarting",
                     extra=fields(**ctx, now_pid=info.pid, state=info.statename))
            return
        log.warning("restarting process over its memory limit", extra=fields(**ctx))
        began = self._clock()
        self._journal.begin(namespec, action.pid, self._wall())
        try:
            client.stop(namespec)
        except SupervisorError as exc:
            if _is_race(exc):
                log.info("process was not stopped by us: " + describe_error(exc), extra=fields(**ctx))
                self._journal.done(namespec)
                return
            # the stop may or may not have happened: the journal entry makes later ticks look
            self._fail("stop failed", namespec, exc, ctx)
            return
        stopped_after = self._clock() - began
        self._journal.stopped(namespec, self._wall())
        self._stats.count(namespec, "restarts")
        if self._start(namespec, ctx):
            log.warning("restarted", extra=fields(
                **ctx, stop_seconds=round(stopped_after, 3),
                downtime_seconds=round(self._clock() - began, 3)))
            if self._mailer and (self._mail_uptime is None or action.uptime <= self._mail_uptime):
                self._mailer.send(
                    f"process {namespec} restarted",
                    f"sentry-memwatch restarted the process named {namespec} at "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} because it was using too much memory "
                    f"({action.memory} bytes {action.measure.upper()}, limit {action.limit} bytes "
                    f"from {action.rule}; it had been up {action.uptime:.0f}s).")

    def _start(self, namespec: str, ctx: dict[str, object]) -> bool:
        """Start a process we stopped, retrying with backoff. True once it runs."""
        client = self._client()
        for attempt, delay in enumerate((0.0, *START_RETRY_DELAYS)):
            if delay:
                self._sleep(delay)
            try:
                client.start(namespec)
            except SupervisorError as exc:
                if isinstance(exc, xmlrpc.client.Fault) and exc.faultCode == BAD_NAME:
                    log.info("process was removed from supervisord while we restarted it",
                             extra=fields(**ctx))
                    self._journal.done(namespec)
                    return False
                if _is_race(exc):  # already started, by a human or supervisord
                    log.info("start not needed: " + describe_error(exc), extra=fields(**ctx))
                    break
                self._stats.count(namespec, "restart_failures")
                log.error("start failed; the process is not running", extra=fields(
                    **ctx, attempt=attempt + 1, error=describe_error(exc)))
                continue
            break
        else:
            log.error("start still failing; will retry on the next tick", extra=fields(**ctx))
            if self._mailer:
                self._mailer.send(f"failed to start process {namespec}",
                                  f"sentry-memwatch stopped {namespec} for memory and could not "
                                  "start it again; it keeps retrying on every tick.")
            return False
        self._journal.done(namespec)
        return True

    def _start_again(self, namespec: str) -> None:
        """A later tick's look at a process we stopped: start it, unless it runs again or a
        human stopped it after us."""
        entry = self._journal.get(namespec)
        if entry is None:
            return
        try:
            info = self._client().process(namespec)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode in RACE_FAULTS:  # removed from supervisord: nothing to start
                log.info("process we stopped was removed from supervisord",
                         extra=fields(process=namespec))
                self._journal.done(namespec)
            return
        except SupervisorError:
            return  # supervisord unreachable: the loop reports it; try on a later tick
        if info.statename == RUNNING:
            log.info("process runs again", extra=fields(process=namespec))
            self._journal.done(namespec)
            return
        if info.statename in ("STOPPING", "STARTING", "BACKOFF"):
            return  # a stop or supervisord's own start is under way: look again next tick
        if entry.stopped is not None and info.stop > entry.stopped + HUMAN_MARGIN:
            log.warning("process was stopped again after our restart, by someone else: "
                        "leaving it as it is", extra=fields(process=namespec, state=info.statename))
            self._journal.done(namespec)
            return
        self._start(namespec, {"process": namespec})

    def _fail(self, message: str, namespec: str, exc: BaseException, ctx: dict[str, object]) -> None:
        self._stats.count(namespec, "restart_failures")
        log.error(message, extra=fields(**ctx, error=describe_error(exc)))

    # --- child signals: instant, on the loop ---

    def _signal_child(self, action: Action) -> None:
        """Signal one child of a supervised process, after checking it is still that child."""
        ctx = {"process": action.namespec, "child_pid": action.pid,
               action.measure: format_size(action.memory), "limit": format_size(action.limit)}
        try:
            child = psutil.Process(action.pid)
            if abs(child.create_time() - action.started) > 1.0 or action.process_pid not in {
                    p.pid for p in child.parents()}:
                log.info("child changed since the decision; not signalling", extra=fields(**ctx))
                return
            child.send_signal(action.signal or signal.SIGTERM)
        except psutil.NoSuchProcess:
            log.info("child exited before the signal", extra=fields(**ctx))
            return
        except psutil.AccessDenied:
            self._stats.count(action.namespec, "restart_failures")
            log.error("not allowed to signal child", extra=fields(**ctx))
            return
        self._stats.count(action.namespec, "child_signals")
        log.warning("signalled child over its memory limit", extra=fields(
            **ctx, signal=signal.Signals(action.signal or signal.SIGTERM).name))


def _is_race(exc: BaseException) -> bool:
    return isinstance(exc, xmlrpc.client.Fault) and exc.faultCode in RACE_FAULTS
