"""Command line and rules file -> a frozen Config. Pure parsing; errors are one line."""

from __future__ import annotations

import argparse
import difflib
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from listener.config.flags import build_parser, misplaced
from listener.config.rulesfile import file_to_argv
from listener.config.settings import (
    COMMANDS,
    DEFAULT_SERVER_URL,
    LISTEN,
    STRATEGY,
    AdviseOptions,
    Config,
    declared,
)
from listener.config.values import ConfigError, Overrides
from listener.core.rules import Entry, Rules, Strategy

__all__ = ["DEFAULT_SERVER_URL", "Config", "ConfigError", "parse"]


def parse(argv: Sequence[str], environ: Mapping[str, str] | None = None,
          listeners_line: bool = False) -> Config:
    """argv (without the program name) -> Config. Raises ConfigError. listeners_line: argv
    holds a listener's command line (check and advise then accept the listener's flags)."""
    environ = os.environ if environ is None else environ
    command, argv = _command(list(argv))
    if not listeners_line and (said := misplaced(argv, command)):
        raise ConfigError(said)
    _memmon_flag_mistakes(argv)
    parser = build_parser(command, also=(LISTEN,) if listeners_line else ())
    first = parser.parse_args(argv)
    file_argv: list[str] = []
    if first.config_file:
        file_argv = file_to_argv(_read_text(first.config_file), first.config_file,
                                 {a.dest for a in parser._actions})  # noqa: SLF001
    ns = parser.parse_args(file_argv + argv)  # the command line comes last, so it wins
    if first.cumulative and first.children not in (None, "sum"):
        raise ConfigError(f"-c/--cumulative conflicts with --children {first.children}")
    ns.children = first.children or ("sum" if first.cumulative else None) or ns.children
    _check_together(ns)
    return Config(rules=_rules(ns), command=command, advise=AdviseOptions(**_given(ns, AdviseOptions)),
                  **{**_given(ns, Config, environ), "config_file": first.config_file})


def _memmon_flag_mistakes(argv: list[str]) -> None:
    """What argparse would say only vaguely ("expected one argument", "unrecognized
    arguments")."""
    for flag, following in zip(argv, [*argv[1:], ""], strict=False):
        # argparse would take '-5MB' for an option and say only "expected one argument"
        if flag in ("-a", "--any") and following[:2].startswith("-") and following[1:2].isdigit():
            raise ConfigError(f"argument -a/--any: a size cannot be negative: {following!r}")
        # supervisord's -c is its config file; memmon's (and ours) takes no value
        given = following if flag in ("-c", "--cumulative") else ""
        glued = flag[2:].removeprefix("=") if flag.startswith("-c") else ""
        if ("/" in glued or "." in glued) and not flag.startswith("--"):  # -c/etc/x.conf
            given = glued
        if given and not given.startswith("-"):
            raise ConfigError(f"-c is memmon's --cumulative and takes no value; the rules file is "
                              f"--config: --config {given}")


def _command(argv: list[str]) -> tuple[str, list[str]]:
    if argv and argv[0] in COMMANDS[1:]:
        return argv[0], argv[1:]
    if argv and not argv[0].startswith("-"):
        close = difflib.get_close_matches(argv[0], COMMANDS[1:])
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown command {argv[0]!r}{hint} (commands: "
                          f"{', '.join(COMMANDS[1:])})")
    return LISTEN, argv


def _given(ns: argparse.Namespace, cls: type, environ: Mapping[str, str] | None = None
           ) -> dict[str, Any]:
    """The fields of `cls` the command line, the file or the environment gave; the others keep
    their declared defaults. An empty value is no value (`--metrics-addr ''` must not mean every
    interface)."""
    given = {}
    for s in declared(cls):
        value = getattr(ns, s.name, None)
        if value in (None, "") and s.env and environ is not None:
            value = environ.get(s.env)
        if value not in (None, ""):
            given[s.name] = value
    return given


def _check_together(ns: argparse.Namespace) -> None:
    """Settings that only mean something with another (each command's namespace holds only the
    settings it takes)."""
    given = {k: v for k, v in vars(ns).items() if v is not None}
    if ("metrics_tls_cert" in given) != ("metrics_tls_key" in given):
        raise ConfigError("--metrics-tls-cert and --metrics-tls-key go together")
    if "metrics_tls_client_ca" in given and "metrics_tls_cert" not in given:
        raise ConfigError("--metrics-tls-client-ca needs --metrics-tls-cert and --metrics-tls-key")
    if "window" in given and "prometheus_url" not in given:
        raise ConfigError("--window goes with --prometheus (live observation uses --duration)")
    if "instance" in given and "prometheus_url" not in given:
        raise ConfigError("--instance goes with --prometheus")


MAX_FILE_BYTES = 256 * 1024  # a rules file for a whole host is a few KiB
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK:
          "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


def _read_text(path: str) -> str:
    """The rules file, read without ever blocking and within MAX_FILE_BYTES: a path swapped for
    a FIFO or a device (a reload reads it on the event loop) is refused, not waited on."""
    try:
        _regular(os.stat(path), path)  # before opening: opening a device can already act
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        with open(fd, "rb") as f:
            _regular(os.fstat(fd), path)  # swapped between the stat and the open
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"--config: {path!r} is larger than {MAX_FILE_BYTES // 1024} KiB, "
                              "the most a rules file may hold")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"--config: cannot read {path!r}: {reason}") from None


def _regular(st: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise ConfigError(f"--config: {path!r} is {kind}, not a regular file: not read")


def _rules(ns: argparse.Namespace) -> Rules:
    """Every limit as a rule; one with KEY=VALUE settings gets the default strategy with those
    settings changed. For one target the last rule given wins (the command line's, after the
    file's)."""
    default = Strategy(**{s.name: getattr(ns, s.name) for s in STRATEGY
                          if getattr(ns, s.name) is not None})

    def entries(given: Iterable[tuple[str, int, Overrides]], flag: str) -> tuple[Entry, ...]:
        last = {name: (size, overrides) for name, size, overrides in given}
        return tuple((name, size, _own(default, overrides, f"rule {flag} {name}")) if overrides
                     else (name, size) for name, (size, overrides) in last.items())

    any_size, any_overrides = ns.any if ns.any is not None else (None, ())
    programs, groups = entries(ns.program or (), "program"), entries(ns.group or (), "group")
    rules = Rules(programs=programs, groups=groups, any=any_size, strategy=default,
                  exclude=tuple(ns.exclude or ()),
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
