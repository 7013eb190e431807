"""Entry point: parse flags, then run the loop (listener.app wires it) or `check`."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TextIO

from listener import log as logsetup
from listener.app import build, connect
from listener.config.parse import parse
from listener.config.settings import Config
from listener.config.values import ConfigError
from listener.core.text import one_line
from listener.host.sampler import Sampler
from listener.log import fields
from listener.supervisord.rpc import Supervisor, SupervisorError, describe_error
from listener.tools import advice, advice_report, history, observe
from listener.tools.advice import Observed
from listener.tools.check import CheckError, check, check_listener, listener_arguments

PROG = "sentry-memwatch"
log = logging.getLogger("memwatch")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = parse(argv)
        connect(config)  # an unsupported --server-url is a usage error, found before anything runs
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # an unsupported --server-url
        print(f"{PROG}: error: --server-url: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    # one-shot commands print their result: the listener's info lines would be noise there
    quiet = config.command != "listen" and config.log_level == "INFO"
    logsetup.setup("WARNING" if quiet else config.log_level, config.log_format)
    warn_if_password_exposed(config)
    if config.command == "check":
        return run_check(config, argv)
    if config.command == "advise":
        return run_advise(config, argv)
    return run_listener(argv, config)


def warn_if_password_exposed(config: Config) -> None:
    """A config file that holds the supervisord password must not be readable by others."""
    path = config.config_file
    if not path or not config.password:
        return
    try:
        mode = os.stat(path).st_mode
        with open(path, encoding="utf-8", errors="replace") as f:
            holds_password = any(line.strip().lower().startswith("password") for line in f)
    except OSError:
        return
    if holds_password and mode & 0o077:
        log.warning("config file holds the supervisord password and is readable by others: "
                    "chmod 600 it", extra=fields(path=path, mode=oct(mode & 0o777)))


def run_check(config: Config, argv: list[str]) -> int:
    supervisor = connect(config)
    try:
        if config.listener_url:
            return check_listener(config.listener_url, sys.stdout, config.rpc_timeout)
        if not config.rules.has_limits and not config.config_file:
            config = listeners_config(supervisor, argv)
            supervisor = connect(config)
        processes = supervisor.processes()
        stop_waits = supervisor.stop_waits()
    except (CheckError, ConfigError, *SupervisorError) as exc:
        return _failed(exc, supervisor)
    return check(config, processes, Sampler(configured=supervisor.configured_commands),
                 sys.stdout, stop_waits=stop_waits)


def _failed(exc: BaseException, supervisor: Supervisor) -> int:
    """One line on stderr for what stopped `check` or `advise`, and exit code 2."""
    if isinstance(exc, ConfigError):
        said = f"the listener's command line: {exc}"
    elif isinstance(exc, history.HistoryError):
        said = f"--prometheus: {exc}"
    elif isinstance(exc, CheckError):
        said = str(exc)
    elif isinstance(exc, OSError):
        said = f"cannot reach supervisord at {supervisor.display_url}: {describe_error(exc)}"
    else:  # it answered: a fault, an HTTP error, an answer that cannot be read
        said = f"supervisord at {supervisor.display_url}: {describe_error(exc)}"
    print(f"{PROG}: error: {one_line(said)}", file=sys.stderr)
    return 2


def run_advise(config: Config, argv: list[str]) -> int:
    """`advise`: observe (or read Prometheus), then the table or JSON; 2 with one line on errors."""
    supervisor = connect(config)
    options = config.advise
    try:
        if not config.rules.has_limits and not config.config_file:
            config = _listeners_rules_if_any(supervisor, argv, config)
        if options.prometheus_url:
            programs = history.observe_history(options.prometheus_url, options.window,
                                               timeout=config.rpc_timeout,
                                               instance=options.instance)
            programs = _with_kinds(supervisor, programs)
        else:
            programs = observe.observe_live(supervisor, config.rules, options.duration,
                                            options.interval, progress=_progress_line())
            if not programs:
                raise CheckError("supervisord runs no process to observe")
    except (CheckError, ConfigError, history.HistoryError, *SupervisorError) as exc:
        return _failed(exc, supervisor)
    host = observe.read_host()
    result = advice.advise(host, _with_stop_waits(supervisor, programs))
    if options.output_format == "json":
        json.dump(advice_report.as_json(host, result), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(advice_report.render(host, result))
    return 0


def _with_kinds(supervisor: Supervisor, programs: list[Observed]) -> list[Observed]:
    """Prometheus does not say what a program runs; supervisord's command lines do, when it
    can be reached from here (advise then runs on the host it advises on)."""
    try:
        kinds = observe.recognised_kinds(supervisor)
    except SupervisorError:
        return programs
    return [replace(p, kind=kinds.get(p.program, p.kind)) for p in programs]


def _with_stop_waits(supervisor: Supervisor, programs: list[Observed]) -> list[Observed]:
    """Each program's stopwaitsecs (the shortest of its processes'), when supervisord says."""
    try:
        waits = supervisor.stop_waits()
    except SupervisorError:
        return programs
    shortest: dict[str, float] = {}
    for namespec, wait in waits.items():
        group = namespec.split(":", 1)[0]
        shortest[group] = min(wait, shortest.get(group, wait))
    return [replace(p, stop_wait=shortest.get(p.program)) for p in programs]


def _listeners_rules_if_any(supervisor: Supervisor, argv: list[str], config: Config) -> Config:
    """The running listener's rules, so that advice compares with the limits in force; none if
    supervisord runs no listener (the advice then says which programs no rule covers), or
    cannot be asked (advise --prometheus may run where supervisord is not)."""
    try:
        return listeners_config(supervisor, argv)
    except (CheckError, *SupervisorError):
        return config


def _progress_line() -> Callable[[float, float], None] | None:
    """A progress line on a terminal (stderr), nothing otherwise."""
    if not sys.stderr.isatty():
        return None

    def show(done: float, total: float) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{PROG}: observing {done:.0f}/{total:.0f}s", end=end, file=sys.stderr, flush=True)
    return show


def listeners_config(supervisor: Supervisor, argv: list[str]) -> Config:
    """A bare `check` judges as the sentry-memwatch listener supervisord runs: with its
    arguments (its rules, its --config file), this command line's coming last."""
    namespec, arguments = listener_arguments(supervisor.commands())
    print(f"{PROG}: judging with the rules of listener {namespec}: {shlex.join(arguments)}",
          file=sys.stderr)
    return parse([argv[0], *arguments, *argv[1:]], listeners_line=True)


def run_listener(argv: list[str], config: Config) -> int:
    # The protocol owns stdout: keep a private descriptor for it and point fd 1 (and sys.stdout)
    # at stderr, so that a stray print() or a child's output can never put the listener in
    # supervisord's UNKNOWN state.
    sys.stdout.flush()
    # An event that arrives while the HTTP thread encodes /metrics waits for the interpreter
    # lock at most this long (default 5 ms), then the scrape gives way (MemwatchCollector).
    sys.setswitchinterval(0.001)
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with open(protocol_fd, "w", encoding="utf-8", newline="\n") as protocol_out, \
            open(sys.stdin.fileno(), encoding="utf-8", errors="surrogateescape", newline="\n",
                 closefd=False) as protocol_in:
        return _serve(argv, config, protocol_in, protocol_out)


def _serve(argv: list[str], config: Config, protocol_in: TextIO, protocol_out: TextIO) -> int:
    def reload() -> Config:
        return parse(argv)

    try:
        parts = build(config, reload=reload if config.config_file else None)
    except OSError as exc:
        print(f"{PROG}: error: --metrics-port: cannot serve metrics on "
              f"{config.metrics_addr}:{config.metrics_port}: {exc}", file=sys.stderr)
        return 1
    if parts.server is not None:
        scheme = "https" if config.metrics_tls_cert else "http"
        log.info("metrics served", extra=fields(
            url=f"{scheme}://{config.metrics_addr}:{parts.server.port}/metrics"))
    parts.daemon.install_signal_handlers()
    try:
        return parts.daemon.run(protocol_in, protocol_out)
    finally:
        parts.close()
