"""The event loop: wait for an event, handle it, answer OK. Nothing in a tick can crash it."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TextIO

from listener import policy, protocol
from listener.actuator import Actuator
from listener.config import Config, ConfigError
from listener.log import fields
from listener.model import ProcessInfo, own_namespecs
from listener.sampler import Sampler
from listener.stats import Stats
from listener.supervisor import Supervisor, SupervisorError, describe_error
from listener.units import format_size

log = logging.getLogger("memwatch.daemon")

SHUTDOWN_GRACE = 30.0  # seconds in-flight restarts may take to finish at exit


class _Shutdown(Exception):
    """Raised by the SIGTERM handler only while the loop is idle, waiting for an event."""


class Daemon:
    def __init__(self, config: Config, supervisor: Supervisor, sampler: Sampler,
                 actuator: Actuator, stats: Stats,
                 reload: Callable[[], Config] | None = None,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.perf_counter,
                 environ: dict[str, str] | None = None) -> None:
        self.config = config
        self.supervisor = supervisor
        self.sampler = sampler
        self.actuator = actuator
        self.stats = stats
        self.reload = reload
        self.clock = clock
        self.timer = timer
        env = os.environ if environ is None else environ
        self.self_names = own_namespecs(env)
        self.self_pids = frozenset({os.getpid()})
        self.state = policy.PolicyState()
        self._supervisor_up: bool | None = None
        self._reload_requested = False
        self._stopping = False
        self._idle = False

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
        self._reload_requested = True

    # --- the loop ---

    def run(self, stdin: TextIO, stdout: TextIO) -> int:
        log.info("started", extra=fields(server=self.supervisor.display_url,
                                         limits=_describe_limits(self.config)))
        try:
            while not self._stopping:
                protocol.send_ready(stdout)
                try:
                    self._idle = True
                    try:
                        event = protocol.read_event(stdin)
                    finally:
                        self._idle = False
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
        log.info("stopping: waiting for in-flight restarts")
        if not self.actuator.shutdown(SHUTDOWN_GRACE):
            log.error("in-flight restarts did not finish in time",
                      extra=fields(processes=",".join(sorted(self.actuator.busy()))))
        return 0

    def handle(self, event: protocol.Event) -> None:
        self.stats.event(event.name or "unknown")
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
        try:
            processes = self.supervisor.processes()
        except SupervisorError as exc:
            self._set_supervisor_up(False, describe_error(exc))
            return
        self._set_supervisor_up(True)
        self.act(processes)
        self.stats.tick_done(self.clock(), self.timer() - began)

    def act(self, processes: Sequence[ProcessInfo]) -> None:
        config = self.config
        result = self.sampler.sample(processes)
        if result.errors:
            self.stats.sample_errors(result.errors)
        now = self.clock()
        decision = policy.decide(processes, result.samples, config, self.state, now,
                                 busy=self.actuator.busy(), self_names=self.self_names,
                                 self_pids=self.self_pids)
        self.state = decision.state
        self.stats.observe(decision.judgements)
        for judgement in decision.suppressed:
            self.stats.count(judgement.process.namespec, "restarts_suppressed")
        for namespec in decision.newly_suppressed:
            log.warning("restart budget used up: leaving the process alone until the window "
                        "frees up", extra=fields(process=namespec, max_restarts=config.max_restarts,
                                                 window_seconds=config.restart_window))
        for action in decision.actions:
            if config.dry_run:
                self.stats.count(action.namespec, "dry_run_actions")
                log.warning(f"dry run: would {action.kind}", extra=fields(
                    process=action.namespec, pid=action.pid,
                    **{action.measure: format_size(action.memory)},
                    limit=format_size(action.limit), rule=action.rule))
            else:
                self.actuator.submit(action)
        if not config.dry_run:
            self.actuator.retry_stopped()
        self.stats.stopped_not_running(len(self.actuator.stopped()))

    def _set_supervisor_up(self, up: bool, error: str = "") -> None:
        """Log on change only: a down supervisord must not flood the log every tick."""
        self.stats.supervisor_up(up)
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
            new = self.reload()
        except ConfigError as exc:
            log.error("config reload failed: keeping the old config", extra=fields(error=str(exc)))
            return
        if (new.measure, new.children) != (self.config.measure, self.config.children):
            self.sampler = Sampler(new.measure, new.children, self.sampler.scanner)
        self.config = new
        log.info("config reloaded", extra=fields(limits=_describe_limits(new)))


def _describe_limits(config: Config) -> str:
    parts = [f"program {n}={format_size(s)}" for n, s in config.limits.programs]
    parts += [f"group {n}={format_size(s)}" for n, s in config.limits.groups]
    if config.limits.any is not None:
        parts.append(f"any={format_size(config.limits.any)}")
    return ", ".join(parts) or "none"
