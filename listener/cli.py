"""Entry point: parse flags, wire the real parts together, run the loop or `check`."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from listener import log as logsetup
from listener.actuator import Actuator
from listener.check import check
from listener.config import Config, ConfigError, parse
from listener.daemon import Daemon
from listener.journal import Journal, default_state_dir
from listener.log import fields
from listener.metrics import MetricsServer, make_registry
from listener.notify import Mailer
from listener.sampler import Sampler
from listener.stats import Stats
from listener.supervisor import Supervisor, SupervisorError, describe_error

PROG = "sentry-memwatch"
log = logging.getLogger("memwatch")


# A stop waits for the program's stopwaitsecs (Celery's warm shutdown can take minutes) and a
# start for its startsecs; supervisord itself bounds both (SIGKILL after stopwaitsecs), so the
# actuator's calls get this long timeout, not --rpc-timeout, which guards the event loop.
ACTION_TIMEOUT = 3600.0


def connect(config: Config, timeout: float | None = None) -> Supervisor:
    return Supervisor(config.server_url, config.username, config.password,
                      timeout or config.rpc_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config, is_check = parse(argv)
        supervisor = connect(config)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # an unsupported --server-url
        print(f"{PROG}: error: --server-url: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    logsetup.setup(config.log_level, config.log_format)
    warn_if_password_exposed(config)
    sampler = Sampler(config.measure, config.children)
    if is_check:
        return run_check(config, supervisor, sampler)
    return run_listener(argv, config, supervisor, sampler)


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


def run_check(config: Config, supervisor: Supervisor, sampler: Sampler) -> int:
    try:
        processes = supervisor.processes()
    except SupervisorError as exc:
        print(f"{PROG}: error: cannot reach supervisord at {supervisor.display_url}: "
              f"{describe_error(exc)}", file=sys.stderr)
        return 2
    return check(config, processes, sampler, sys.stdout)


def run_listener(argv: list[str], config: Config, supervisor: Supervisor, sampler: Sampler) -> int:
    # The protocol owns stdout: keep a private descriptor for it and point fd 1 (and sys.stdout)
    # at stderr, so that a stray print() or a child's output can never put the listener in
    # supervisord's UNKNOWN state.
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with open(protocol_fd, "w", encoding="utf-8", newline="\n") as protocol_out, \
            open(sys.stdin.fileno(), encoding="utf-8", errors="surrogateescape", newline="\n",
                 closefd=False) as protocol_in:
        return _serve(argv, config, supervisor, sampler, protocol_in, protocol_out)


def _serve(argv: list[str], config: Config, supervisor: Supervisor, sampler: Sampler,
           protocol_in: TextIO, protocol_out: TextIO) -> int:
    stats = Stats()
    server = None
    if config.metrics_port:
        try:
            server = MetricsServer(make_registry(stats), config.metrics_addr, config.metrics_port,
                                   config.metrics_tls_cert, config.metrics_tls_key,
                                   config.metrics_tls_client_ca)
        except (OSError, ValueError) as exc:
            print(f"{PROG}: error: --metrics-port: cannot serve metrics on "
                  f"{config.metrics_addr}:{config.metrics_port}: {exc}", file=sys.stderr)
            return 1
        log.info("metrics served", extra=fields(
            url=f"{'https' if config.metrics_tls_cert else 'http'}://{config.metrics_addr}:{server.port}/metrics"))
    mailer = Mailer(config.email, config.sendmail, config.name) if config.email else None
    journal = Journal.open(config.state_dir or default_state_dir(), os.environ,
                           config.server_url)
    actuator = Actuator(lambda: connect(config, max(config.rpc_timeout, ACTION_TIMEOUT)), stats,
                        mailer, config.uptime, journal=journal)

    def reload() -> Config:
        return parse(argv)[0]

    daemon = Daemon(config, supervisor, sampler, actuator, stats,
                    reload=reload if config.config_file else None)
    daemon.install_signal_handlers()
    try:
        return daemon.run(protocol_in, protocol_out)
    finally:
        if server is not None:
            server.close()
