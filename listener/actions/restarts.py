"""Restarts (stop, then start) carried out off the event loop, with nothing we stopped forgotten.

supervisord has no restartProcess; each restart runs in a worker thread with its own XML-RPC
client, so a slow stop never delays the answer to an event. Every stop is written to the
journal first; a process we stopped stays there until it runs again, and is retried with
backoff, on later ticks too, until it runs or a human takes it over: a watchdog must never turn
a leak into an outage. The journal outlives the listener, so a restart cut short by SIGKILL or
the OOM killer is finished by the next run. What the loop asks (busy, stopped) is answered from
memory: no disk write is ever on the loop's path.
"""

from __future__ import annotations

import logging
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

from listener.actions import forced
from listener.actions.journal import Journal
from listener.actions.mail import Mailer
from listener.core import recovery
from listener.core.model import Restart
from listener.core.recovery import RetryTiming
from listener.core.states import RUNNING
from listener.log import fields
from listener.supervisord.rpc import (
    Fault,
    Supervisor,
    SupervisorError,
    counts_as_failure,
    describe_error,
    is_race,
)
from listener.web.stats import Counter, Stats

log = logging.getLogger("memwatch.restarts")


@dataclass
class Retry:
    """How the start of one process we stopped has gone so far (forgotten with the process)."""

    start_asked: bool = False  # we asked supervisord for a start since our stop
    backoff: float | None = None  # seconds of the last wait after a failed start
    not_before: float = 0.0  # no new start before this (monotonic)
    mailed: bool = False  # its start failure was mailed about


class Restarter:
    def __init__(self, connect: Callable[[], Supervisor], stats: Stats,
                 journal: Journal | None = None, mailer: Mailer | None = None,
                 executor: Executor | None = None, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 timing: RetryTiming = recovery.PRODUCTION) -> None:
        self._connect = connect
        self._stats = stats
        self._journal = journal or Journal(None)  # stopped by us, not yet running again
        self._mailer = mailer
        self._pool = executor or ThreadPoolExecutor(max_workers=8, thread_name_prefix="memwatch-act")
        self._sleep = sleep
        self._monotonic = monotonic
        self._wall = wall
        self._timing = timing
        self._local = threading.local()
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._retries: dict[str, Retry] = {}  # namespec -> how its start goes, while we owe one
        left = self._journal.entries()
        if left:
            log.warning("finishing restarts left unfinished by a previous run", extra=fields(
                processes=",".join(sorted(e.namespec for e in left))))

    # --- what the loop asks: memory only ---

    def busy(self) -> frozenset[str]:
        """Processes with a restart in flight or waiting for a successful start."""
        return self.in_flight() | self.stopped()

    def in_flight(self) -> frozenset[str]:
        """Processes a worker thread is stopping or starting right now."""
        with self._lock:
            return frozenset(self._busy)

    def stopped(self) -> frozenset[str]:
        return frozenset(e.namespec for e in self._journal.entries())

    def submit(self, action: Restart) -> None:
        namespec = action.target.namespec
        with self._lock:
            if namespec in self._busy:
                return
            self._busy.add(namespec)
        self._pool.submit(self._guarded, self._restart, namespec, action)

    def retry_stopped(self) -> None:
        """Look again at what we stopped and is not running yet (called every tick)."""
        stopped = self.stopped()
        now = self._monotonic()
        with self._lock:
            pending = [n for n in sorted(stopped)
                       if n not in self._busy and self._retries.get(n, Retry()).not_before <= now]
            self._busy.update(pending)
        for namespec in pending:
            self._pool.submit(self._guarded, self._start_again, namespec)

    def shutdown(self, timeout: float) -> bool:
        """Take no new work; wait up to `timeout` for in-flight restarts. True if all done."""
        deadline = self._monotonic() + timeout
        self._pool.shutdown(wait=False, cancel_futures=False)
        while self._monotonic() < deadline:
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

    def _restart(self, namespec: str, action: Restart) -> None:
        client = self._client()
        t = action.target
        ctx = t.fields()
        try:
            info = client.process(namespec)
        except SupervisorError as exc:
            self._fail("could not look up process before restart", namespec, exc, ctx)
            return
        if info.pid != t.pid or info.statename != RUNNING:
            log.info("process changed since the decision; not restarting",
                     extra=fields(**ctx, now_pid=info.pid, state=info.statename))
            return
        if action.escalates is not None:
            log.warning("restarting process: its signalled child outlived --child-signal-timeout",
                        extra=fields(**ctx))
        else:
            log.warning("restarting process over its memory limit", extra=fields(**ctx))
        wait = forced.stop_wait(client, namespec)
        began = self._monotonic()
        self._journal.begin(namespec, t.pid, self._wall())
        try:
            client.stop(namespec)
        except SupervisorError as exc:
            if is_race(exc):
                log.info("process was not stopped by us: " + describe_error(exc), extra=fields(**ctx))
                self._forget(namespec)
                return
            # the stop may or may not have happened: the journal entry makes later ticks look
            self._fail("stop failed", namespec, exc, ctx)
            return
        stopped_after = self._monotonic() - began
        self._journal.stopped(namespec, self._wall())
        self._stats.count(namespec, Counter.RESTARTS)
        forced.say_if_forced(client, self._stats, namespec, stopped_after, wait, ctx)
        if action.escalates is not None:
            self._stats.count(namespec, Counter.CHILD_SIGNAL_ESCALATIONS)
        if self._start(namespec, ctx):
            log.warning("restarted", extra=fields(
                **ctx, stop_seconds=round(stopped_after, 3),
                downtime_seconds=round(self._monotonic() - began, 3)))
            if self._mailer:
                self._mailer.restarted(action)

    def _start(self, namespec: str, ctx: dict[str, object]) -> bool:
        """One start of a process we stopped. True once supervisord says it is RUNNING; else it
        stays in the journal, and a later tick looks again (after a backoff if this failed)."""
        client = self._client()
        try:
            client.start(namespec)
        except SupervisorError as exc:
            code = exc.faultCode if isinstance(exc, xmlrpc.client.Fault) else None
            if counts_as_failure(exc):  # supervisord got the request (not shutting down, reachable)
                self._tried(namespec)
            if code == Fault.BAD_NAME:
                log.info("process was removed from supervisord while we restarted it",
                         extra=fields(**ctx))
                self._forget(namespec)
                return False
            if code != Fault.ALREADY_STARTED:  # already: supervisord's own start, checked below
                self._start_failed(namespec, exc, ctx)
                return False
        else:
            self._tried(namespec)
        try:
            state = client.process(namespec).statename
        except SupervisorError:
            return False  # unreachable: the loop reports it; look again on a later tick
        if state == RUNNING:
            self._forget(namespec)
            return True
        if recovery.gave_up(state):
            self._start_failed(namespec, None, {**ctx, "state": state})
        return False

    def _start_failed(self, namespec: str, exc: BaseException | None,
                      ctx: dict[str, object]) -> None:
        """Count it (unless supervisord was only shutting down or out of reach), say so, and
        try again after a backoff (RetryTiming.backoff)."""
        with self._lock:
            retry = self._retry(namespec)
            retry.backoff = delay = self._timing.backoff(retry.backoff)
            retry.not_before = self._monotonic() + delay
        error = describe_error(exc) if exc else "not running"
        if exc is not None and not counts_as_failure(exc):
            log.info("start not done: supervisord is shutting down or out of reach; trying again",
                     extra=fields(**ctx, error=error, retry_seconds=delay))
            return
        self._stats.count(namespec, Counter.RESTART_FAILURES)
        log.error("start failed; the process is not running", extra=fields(
            **ctx, error=error, retry_seconds=delay))
        if self._mailer and self._first_mail(namespec):
            self._mailer.start_failed(namespec)

    def _retry(self, namespec: str) -> Retry:
        """The record of a process we stopped, made at its first start; hold the lock."""
        return self._retries.setdefault(namespec, Retry())

    def _first_mail(self, namespec: str) -> bool:
        """True the first time only: one mail about a failed start per process we stopped."""
        with self._lock:
            retry = self._retry(namespec)
            first, retry.mailed = not retry.mailed, True
        return first

    def _tried(self, namespec: str) -> None:
        with self._lock:
            self._retry(namespec).start_asked = True

    def _forget(self, namespec: str) -> None:
        """Our responsibility for the process ends: it runs, was removed, or a human took over."""
        self._journal.done(namespec)
        with self._lock:
            self._retries.pop(namespec, None)

    def _start_again(self, namespec: str) -> None:
        """A later tick's look at a process we stopped (recovery.next_step decides)."""
        entry = self._journal.get(namespec)
        if entry is None:
            return
        try:
            info = self._client().process(namespec)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == Fault.BAD_NAME:  # removed from supervisord: nothing to start
                log.info("process we stopped was removed from supervisord",
                         extra=fields(process=namespec))
                self._forget(namespec)
            return
        except SupervisorError:
            return  # supervisord unreachable: the loop reports it; try on a later tick
        with self._lock:
            start_asked = self._retries.get(namespec, Retry()).start_asked
        step = recovery.next_step(info.statename, info.stop, entry.stopped, start_asked,
                                  self._timing.human_margin)
        if step is recovery.Next.START:
            self._start(namespec, {"process": namespec, "state": info.statename})
        elif step is recovery.Next.DONE:
            log.info("process we stopped runs again", extra=fields(process=namespec))
            self._forget(namespec)
        elif step is recovery.Next.LET_GO:
            log.warning("process we stopped was stopped again by someone else: leaving it as it is",
                        extra=fields(process=namespec, state=info.statename))
            self._forget(namespec)

    def _fail(self, message: str, namespec: str, exc: BaseException, ctx: dict[str, object]) -> None:
        if counts_as_failure(exc):
            self._stats.count(namespec, Counter.RESTART_FAILURES)
            log.error(message, extra=fields(**ctx, error=describe_error(exc)))
        else:
            log.info(message + ": supervisord is shutting down or out of reach",
                     extra=fields(**ctx, error=describe_error(exc)))
