"""Command line and config file -> a frozen Config. Pure parsing; errors are one line."""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from listener.config.flags import DEFAULT_SERVER_URL, ConfigError, Overrides, build_parser
from listener.config.rulesfile import file_to_argv
from listener.core.rules import Entry, Rules, Strategy

__all__ = ["DEFAULT_SERVER_URL", "Config", "ConfigError", "build_parser", "file_to_argv", "parse"]


@dataclass(frozen=True)
class AdviseOptions:
    duration: float = 60.0
    interval: float = 2.0
    prometheus_url: str | None = None
    window: float = 7 * 86400.0
    instance: str | None = None  # with --prometheus: the listener's `instance` label
    output_format: str = "table"


@dataclass(frozen=True)
class Config:
    rules: Rules = field(default_factory=Rules)
    email: str | None = None
    sendmail: str = "/usr/sbin/sendmail -t -i"
    uptime: float | None = None
    name: str | None = None
    dry_run: bool = False
    server_url: str = DEFAULT_SERVER_URL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    rpc_timeout: float = 10.0
    resync: float = 300.0  # with PROCESS_STATE events: list everything this often anyway
    metrics_addr: str = "127.0.0.1"
    metrics_port: int = 9870
    metrics_tls_cert: str | None = None
    metrics_tls_key: str | None = None
    metrics_tls_client_ca: str | None = None
    state_dir: str | None = None  # None: default_state_dir()
    log_level: str = "INFO"
    log_format: str = "text"
    config_file: str | None = None
    listener_url: str | None = None  # check --listener: a running listener's /status
    command: str = "listen"  # listen, check or advise
    advise: AdviseOptions = field(default_factory=lambda: AdviseOptions())

    @property
    def strategy(self) -> Strategy:
        return self.rules.strategy


def parse(argv: Sequence[str], environ: dict[str, str] | None = None) -> tuple[Config, bool]:
    """argv (without the program name) -> (Config, is_check). Raises ConfigError."""
    environ = dict(os.environ) if environ is None else environ
    argv = list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "listen"
    if command != "listen":
        argv = argv[1:]
    elif argv and not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], COMMANDS)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown command {argv[0]!r}{hint} (commands: {', '.join(COMMANDS)})")
    is_check = command == "check"
    for flag, following in zip(argv, argv[1:], strict=False):
        # argparse would take '-5MB' for an option and say only "expected one argument"
        if flag in ("-a", "--any") and following[:2].startswith("-") and following[1:2].isdigit():
            raise ConfigError(f"argument -a/--any: a size cannot be negative: {following!r}")
    parser = build_parser()
    first = parser.parse_args(argv)
    file_argv: list[str] = []
    if first.config:
        file_argv = file_to_argv(parser, _read_text(first.config), first.config)
    ns = parser.parse_args(file_argv + argv)  # the command line comes last, so it wins
    if first.cumulative and first.children not in (None, "sum"):
        raise ConfigError(f"-c/--cumulative conflicts with --children {first.children}")
    ns.children = first.children or ("sum" if first.cumulative else None) or ns.children
    if ns.listener and not is_check:
        raise ConfigError("--listener goes with check (sentry-memwatch check --listener URL)")
    if command != "advise":
        for flag in ("duration", "interval", "prometheus", "window", "format", "instance"):
            if getattr(first, flag) is not None:
                raise ConfigError(f"--{flag} goes with advise (sentry-memwatch advise --{flag} ...)")
    if ns.window is not None and not ns.prometheus:
        raise ConfigError("--window goes with --prometheus (live observation uses --duration)")
    if ns.instance is not None and not ns.prometheus:
        raise ConfigError("--instance goes with --prometheus")
    config = _to_config(ns, environ, first.config)
    return replace(config, command=command, advise=_advise(ns)), is_check


COMMANDS = ("check", "advise")


def _advise(ns: argparse.Namespace) -> AdviseOptions:
    d = AdviseOptions()
    return AdviseOptions(duration=_given(ns.duration, d.duration),
                         interval=_given(ns.interval, d.interval),
                         prometheus_url=ns.prometheus, window=_given(ns.window, d.window),
                         instance=ns.instance,
                         output_format=ns.format or d.output_format)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--config: cannot read {path!r}: {reason}") from None


T = TypeVar("T")


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def _rules(ns: argparse.Namespace) -> Rules:
    """Every limit as a rule; one with KEY=VALUE settings gets the default strategy with those
    settings changed. For one target the last rule given wins (the command line's, after the
    file's)."""
    default = _strategy(ns)

    def entries(given: Iterable[tuple[str, int, Overrides]], flag: str) -> tuple[Entry, ...]:
        last = {name: (size, overrides) for name, size, overrides in given}
        return tuple((name, size, _own(default, overrides, f"rule {flag} {name}")) if overrides
                     else (name, size) for name, (size, overrides) in last.items())

    any_size, any_overrides = ns.any if ns.any is not None else (None, ())
    programs, groups = entries(ns.program, "program"), entries(ns.group, "group")
    rules = Rules(programs=programs, groups=groups, any=any_size, strategy=default,
                  exclude=tuple(ns.exclude),
                  any_strategy=_own(default, any_overrides, "rule any") if any_overrides else None)
    inherit = [e for e in (*programs, *groups) if len(e) == 2]
    if inherit or (any_size is not None and not any_overrides) or not (programs or groups or ns.any):
        _check_signal(default, "--child-signal needs --children each (or auto)")
    return rules


def _own(default: Strategy, overrides: Overrides, rule: str) -> Strategy:
    strategy = replace(default, **dict(overrides))  # type: ignore[arg-type]
    _check_signal(strategy, f"{rule}: child-signal needs children each (or auto)")
    return strategy


def _check_signal(strategy: Strategy, message: str) -> None:
    if strategy.child_signal is not None and strategy.children not in ("each", "auto"):
        raise ConfigError(message)


def _strategy(ns: argparse.Namespace) -> Strategy:
    children = ns.children or "none"
    d = Strategy()
    return Strategy(
        measure=ns.measure or d.measure,
        children=children,
        child_signal=ns.child_signal,
        child_signal_timeout=_given(ns.child_signal_timeout, d.child_signal_timeout),
        consecutive=ns.consecutive or d.consecutive,
        grace=_given(ns.grace, d.grace),
        max_restarts=_given(ns.max_restarts, d.max_restarts),
        restart_window=_given(ns.restart_window, d.restart_window),
        max_parallel=ns.max_parallel or d.max_parallel,
    )


def _to_config(ns: argparse.Namespace, environ: dict[str, str], config_file: str | None) -> Config:
    if bool(ns.metrics_tls_cert) != bool(ns.metrics_tls_key):
        raise ConfigError("--metrics-tls-cert and --metrics-tls-key go together")
    if ns.metrics_tls_client_ca and not ns.metrics_tls_cert:
        raise ConfigError("--metrics-tls-client-ca needs --metrics-tls-cert and --metrics-tls-key")
    d = Config()
    return Config(
        rules=_rules(ns),
        email=ns.email,
        sendmail=ns.sendmail_program or d.sendmail,
        uptime=ns.uptime,
        name=ns.name,
        dry_run=ns.dry_run,
        server_url=ns.server_url or environ.get("SUPERVISOR_SERVER_URL") or d.server_url,
        username=ns.username or environ.get("SUPERVISOR_USERNAME") or None,
        password=ns.password or environ.get("SUPERVISOR_PASSWORD") or None,
        rpc_timeout=_given(ns.rpc_timeout, d.rpc_timeout),
        resync=_given(ns.resync, d.resync),
        metrics_addr=ns.metrics_addr or d.metrics_addr,
        metrics_port=_given(ns.metrics_port, d.metrics_port),
        metrics_tls_cert=ns.metrics_tls_cert,
        metrics_tls_key=ns.metrics_tls_key,
        metrics_tls_client_ca=ns.metrics_tls_client_ca,
        state_dir=ns.state_dir,
        log_level=ns.log_level or d.log_level,
        log_format=ns.log_format or d.log_format,
        config_file=config_file,
        listener_url=ns.listener,
    )
