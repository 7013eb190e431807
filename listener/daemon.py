"""The event loop: wait for an event, handle it, answer OK. Nothing in a tick can crash it."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import FrameType
from typing import TextIO

from listener.actions.restarts import Restarter
from listener.config.reload import reloaded
from listener.config.settings import Config
from listener.config.values import ConfigError
from listener.core import policy
from listener.core.model import Action, ProcessInfo, Restart, SignalChild, own_namespecs
from listener.core.rows import watched_rows
from listener.host.child_signals import ChildSignaller, Sent, say_drained
from listener.host.hostmem import HostMemoryWatch
from listener.host.oomwatch import OomWatch
from listener.host.sampler import Sampler
from listener.log import fields
from listener.supervisord import protocol
from listener.supervisord.proctable import ProcessTable
from listener.supervisord.rpc import Supervisor, SupervisorError, boot_clock, describe_error
from listener.supervisord.ticks import TickWatch, section
from listener.web.stats import Counter, Stats

log = logging.getLogger("memwatch.daemon")

SHUTDOWN_GRACE = 30.0  # seconds in-flight restarts may take to finish at exit
MAX_ERROR = 400  # characters of a reload error in the log (a value quoted from the file)
SAY_SUBSCRIBE_AFTER = 3  # ticks without a PROCESS_STATE event: the listener is not subscribed


class _Shutdown(Exception):
    """Raised by the SIGTERM handler only while the loop is idle, waiting for an event."""


class Daemon:
    def __init__(self, config: Config, supervisor: Supervisor, sampler: Sampler,
                 restarter: Restarter, signaller: ChildSignaller, stats: Stats,
                 reload: Callable[[], Config] | None = None,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.perf_counter,
                 environ: Mapping[str, str] | None = None,
                 host: HostMemoryWatch | None = None, oom: OomWatch | None = None) -> None:
        self.config = config
        self.host = host or HostMemoryWatch(config.pressure)
        self.supervisor = supervisor
        self.sampler = sampler
        self.restarter = restarter
        self.signaller = signaller
        self.stats = stats
        self.reload = reload
        self.oom = oom  # the kernel's OOM kills seen, oom_score_adj written
        self.clock = clock  # wall time: compared with supervisord's and the kernel's start times
        self.timer = timer  # for durations only
        self.self_names = own_namespecs(os.environ if environ is None else environ)
        self.self_pids = frozenset({os.getpid()})
        self.state = policy.PolicyState()
        self._supervisor_up: bool | None = None
        self._reload_requested = False
        self._stopping = False
        self._idle = False
        self._dry_run_before: set[str] = set()  # processes a dry run would act on last tick
        self.table = ProcessTable(config.resync, time.monotonic, clock, boot_clock)
        self._from_table = False  # this tick's processes came from the table, not a listing
        self._ticks = 0
        self.watch = TickWatch(config.tick_timeout, stats,
                               section(os.environ if environ is None else environ))

    # --- signals: handlers set flags; the loop does the work ---

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        if self._idle:
            raise _Shutdown()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.request_reload()

    def request_reload(self) -> None:
        """Re-read the config before the next tick (SIGHUP)."""
        self._reload_requested = True

    # --- the loop ---

    def run(self, stdin: TextIO, stdout: TextIO) -> int:
        log.info("started", extra=fields(server=self.supervisor.display_url,
                                         limits=self.config.rules.describe()))
        self.watch.start()
        _warn_without_limits(self.config)
        try:
            while not self._stopping:
                protocol.send_ready(stdout)
                self.stats.loop_busy(False)
                try:
                    self._idle = True
                    try:
                        event = protocol.read_event(stdin)
                    finally:
                        self._idle = False
                        self.stats.loop_busy(True)
                except protocol.ProtocolError as exc:
                    log.error("malformed event: answering FAIL", extra=fields(error=str(exc)))
                    self.stats.event("malformed")
                    protocol.send_result(stdout, ok=False)
                    continue
                if event is None:
                    log.info("stdin closed: exiting")
                    break
                self.handle(event)
                protocol.send_result(stdout, ok=True)
        except _Shutdown:
            pass
        except BrokenPipeError:
            log.info("stdout closed: exiting")
        return self.stop()

    def stop(self) -> int:
        self.watch.stop()
        self.stats.loop_busy(False)  # no more events: scrapes need not wait for any
        in_flight = self.restarter.in_flight()
        if in_flight:
            log.info("stopping: waiting for in-flight restarts",
                     extra=fields(processes=",".join(sorted(in_flight))))
        else:
            log.info("stopping")
        if not self.restarter.shutdown(SHUTDOWN_GRACE):
            log.error("in-flight restarts did not finish in time",
                      extra=fields(processes=",".join(sorted(self.restarter.in_flight()))))
        return 0

    def handle(self, event: protocol.Event) -> None:
        self.stats.event(event.name or "unknown")
        self.watch.saw(event.name)
        self.table.saw(event.headers)
        if event.name.startswith(("PROCESS_STATE_", "PROCESS_GROUP_")):
            self.table.apply(event.name, event.payload)  # no RPC: answered as fast as a TICK
            return
        if not event.name.startswith("TICK"):
            return
        try:
            self.tick()
        except Exception:  # a bug in one tick must not cost supervisord its listener
            log.exception("tick failed")

    def tick(self) -> None:
        began = self.timer()
        if self._reload_requested:
            self._reload_requested = False
            self._reload()
        processes = self._processes()
        if processes is None:
            return
        self.act(processes)
        self.stats.tick_done(self.clock(), self.timer() - began)

    def _processes(self) -> list[ProcessInfo] | None:
        """The event-kept table when it can be trusted; else a full listing (None if
        supervisord cannot be reached)."""
        self._ticks += 1
        subscribed, listed_before = self.table.subscribed, self.table.listed
        reason = self.table.resync_reason()
        self._from_table = subscribed and reason is None
        if self._from_table:
            return self.table.processes()
        if not subscribed and self._ticks == SAY_SUBSCRIBE_AFTER:
            log.info("listing every process on every tick: events=TICK_5,PROCESS_STATE,"
                     "PROCESS_GROUP in the listener's section would spare supervisord that")
        try:
            processes = self.supervisor.processes()
        except SupervisorError as exc:
            self.table.unreachable()
            self._set_supervisor_up(False, describe_error(exc))
            return None
        self._set_supervisor_up(True)
        self.table.reset(processes)
        if subscribed and listed_before:
            log.info("process table listed again", extra=fields(reason=reason))
        return processes

    def act(self, processes: Sequence[ProcessInfo]) -> None:
        config = self.config
        self.host.settings = config.pressure  # as the last reload left it
        pressure = self.host.update(self.clock()).active
        result = self.sampler.sample(processes, config.rules, now=self.clock(), pressure=pressure)
        if result.errors:
            self.stats.sample_errors(result.errors)
        now = self.clock()
        decision = policy.decide(processes, result.samples, config.rules, self.state, now,
                                 busy=self.restarter.busy(), self_names=self.self_names,
                                 self_pids=self.self_pids, pressure=pressure)
        say_drained(self.state.signalled, decision.state.signalled, processes, now)
        self.state = decision.state
        self.stats.observe(watched_rows(decision.judgements, decision.state), now)
        if self.oom is not None:
            self.oom.tick(processes, result.samples, config.rules)
        for judgement in decision.suppressed:
            namespec = judgement.process.namespec
            self.stats.count(namespec, Counter.RESTARTS_SUPPRESSED)
            if namespec in decision.newly_suppressed and judgement.rule:
                strategy = judgement.rule.strategy
                log.warning("restart budget used up: leaving the process alone until the window "
                            "frees up", extra=fields(process=namespec, max_restarts=strategy.max_restarts,
                                                     window_seconds=strategy.restart_window))
        dry_run_now: set[str] = set()
        unsent: set[tuple[str, int]] = set()
        for action in decision.actions:
            if config.dry_run:
                dry_run_now.add(action.target.namespec)
                self._say_dry_run(action)
            elif isinstance(action, Restart):
                self.restarter.submit(action)  # confirms the pid with getProcessInfo first
                continue
            elif self._signal(action):
                continue
            if isinstance(action, SignalChild):
                unsent.add((action.target.namespec, action.child_pid))
        if unsent:  # a signal never sent leaves no child draining, and nothing to escalate
            self.state = replace(self.state, signalled={
                k: v for k, v in self.state.signalled.items() if k not in unsent})
        self._dry_run_before = dry_run_now
        if not config.dry_run:
            self.restarter.retry_stopped()
        self.stats.stopped_not_running(len(self.restarter.stopped()))

    def _say_dry_run(self, action: Action) -> None:
        """Count what a dry run would do, every tick; say it on the tick it starts."""
        namespec = action.target.namespec
        self.stats.count(namespec, Counter.DRY_RUN_ACTIONS)
        if namespec in self._dry_run_before:
            return  # a log line per change, not per tick
        if isinstance(action, Restart):
            log.warning("dry run: would restart", extra=fields(
                **action.target.fields(), escalating_child=action.escalates))
        else:  # the target's fields name the child whose figure it is: the same pid
            log.warning("dry run: would signal child", extra=fields(
                **{**action.target.fields(), "child_pid": action.child_pid}))

    def _signal(self, action: SignalChild) -> bool:
        """Send a child signal (confirmed first); True if it went (or a restart took its place)."""
        # decided from the event-kept table: supervisord confirms the process first
        if self._from_table and not self.table.confirm(self.supervisor, action.target.namespec,
                                                       action.target.pid):
            return False
        sent = self.signaller.send(action)
        if sent is Sent.NOT_CAUGHT and action.otherwise:
            self.restarter.submit(action.otherwise)  # a signal would kill it mid-task
        return sent is Sent.YES

    def _set_supervisor_up(self, up: bool, error: str = "") -> None:
        """Log on change only: a down supervisord must not flood the log every tick."""
        self.stats.supervisor_up(up, error, self.supervisor.display_url)
        if up == self._supervisor_up:
            return
        self._supervisor_up = up
        if up:
            log.info("supervisord reachable", extra=fields(server=self.supervisor.display_url))
        else:
            log.error("supervisord unreachable", extra=fields(
                server=self.supervisor.display_url, error=error))

    def _reload(self) -> None:
        if self.reload is None:
            log.info("SIGHUP: no --config file to re-read")
            return
        try:
            done = reloaded(self.config, self.reload())
        except ConfigError as exc:
            log.error("config reload failed: keeping the old config", extra=fields(
                error=str(exc)[:MAX_ERROR]))
            return
        self.config = new = done.config
        self.table.resync_every = new.resync
        self.watch.timeout = new.tick_timeout
        level, message, said = done.said()
        log.log(level, message, extra=fields(**said))
        _warn_without_limits(new)


def _warn_without_limits(config: Config) -> None:
    """A listener without a limit runs and restarts nothing: say so, it is rarely meant."""
    if not config.rules.has_limits:
        where = f"in {config.config_file}" if config.config_file else "given"
        log.warning(f"no limit {where}: nothing will be restarted (limits: -p, -g, -a, or "
                    "[program:NAME], [group:NAME], [any] with limit = SIZE in --config)")

