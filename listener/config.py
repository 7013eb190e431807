"""Command line and config file -> a frozen Config. Pure parsing; errors are one line."""

from __future__ import annotations

import argparse
import fnmatch
import os
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from listener.units import parse_duration, parse_size

CHILDREN_MODES = ("none", "sum", "each")
MEASURES = ("rss", "pss", "uss")
DEFAULT_SERVER_URL = "unix:///var/run/supervisor.sock"


class ConfigError(ValueError):
    """A bad flag, value or config-file line; the message is one line that names it."""


@dataclass(frozen=True)
class Limits:
    """Memory limits by specificity: process (`group:name` or `name`), `group:*`, group, any."""

    programs: tuple[tuple[str, int], ...] = ()
    groups: tuple[tuple[str, int], ...] = ()
    any: int | None = None

    @cached_property
    def _programs(self) -> dict[str, int]:
        return dict(self.programs)

    @cached_property
    def _groups(self) -> dict[str, int]:
        return dict(self.groups)

    def limit_for(self, group: str, name: str) -> tuple[int, str] | None:
        """The most specific limit that applies, and which rule it came from."""
        programs = self._programs
        for key in (f"{group}:{name}", name, f"{group}:*"):
            if key in programs:
                return programs[key], f"program {key}"
        groups = self._groups
        if group in groups:
            return groups[group], f"group {group}"
        if self.any is not None:
            return self.any, "any"
        return None

    @property
    def empty(self) -> bool:
        return not self.programs and not self.groups and self.any is None


@dataclass(frozen=True)
class Config:
    limits: Limits = field(default_factory=Limits)
    children: str = "none"
    measure: str = "rss"
    email: str | None = None
    sendmail: str = "/usr/sbin/sendmail -t -i"
    uptime: float | None = None
    name: str | None = None
    consecutive: int = 1
    grace: float = 0.0
    max_restarts: int = 0  # 0: no budget (memmon's behaviour)
    restart_window: float = 3600.0
    max_parallel: int = 1
    child_signal: int | None = None
    exclude: tuple[str, ...] = ()
    dry_run: bool = False
    server_url: str = DEFAULT_SERVER_URL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    rpc_timeout: float = 10.0
    metrics_addr: str = "127.0.0.1"
    metrics_port: int = 9870
    metrics_tls_cert: str | None = None
    metrics_tls_key: str | None = None
    metrics_tls_client_ca: str | None = None
    state_dir: str | None = None  # None: default_state_dir()
    log_level: str = "INFO"
    log_format: str = "text"
    config_file: str | None = None

    def excluded(self, group: str, name: str) -> bool:
        namespec = f"{group}:{name}"
        return any(fnmatch.fnmatchcase(namespec, p) for p in self.exclude)


# --- value parsers used by argparse (and by the config-file reader, for line numbers) ---


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_duration(text: str) -> float:
    value = _duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _name_size(text: str) -> tuple[str, int]:
    name, sep, size = text.rpartition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=SIZE (e.g. sentry-web=400MB)")
    name = name.strip()
    if name.count(":") > 1 or name.startswith(":") or name.endswith(":"):
        raise argparse.ArgumentTypeError(f"{name!r} is not a process name, group:process or group:*")
    return name, _size(size)


def _group_size(text: str) -> tuple[str, int]:
    name, size = _name_size(text)
    if ":" in name:
        raise argparse.ArgumentTypeError(f"{name!r} is not a group name (no ':' allowed)")
    return name, size


def _whole(text: str, low: int, high: int | None = None, what: str = "") -> int:
    text = text.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    value = int(text)
    if value < low or (high is not None and value > high):
        bounds = f"{low}-{high}" if high is not None else f"at least {low}"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what or 'a number'} ({bounds})")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole(text, 0)


def _port(text: str) -> int:
    return _whole(text, 0, 65535, "a port")


def _signal(text: str) -> int:
    name = text.strip().upper()
    if name.isdigit():
        try:
            return int(signal.Signals(int(name)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a signal number") from None
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a signal (e.g. HUP, TERM)") from None


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a log level (debug, info, warning, error)")
    return level


def one_line(text: str) -> str:
    """Control characters escaped, so that an error about hostile input stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(one_line(message))


def build_parser(prog: str = "sentry-memwatch") -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog,
        usage=f"{prog} [check] [options]",
        description="Restart supervisord processes that use too much memory (a drop-in for "
        "superlance's memmon), with Prometheus metrics. `check` prints a table once and exits "
        "0 (none over), 1 (some over) or 2 (error).",
    )
    memmon = p.add_argument_group("memmon-compatible options")
    memmon.add_argument("-p", "--program", type=_name_size, action="append", default=[],
                        metavar="NAME=SIZE",
                        help="limit for a process: name, group:process or group:* (repeatable)")
    memmon.add_argument("-g", "--group", type=_group_size, action="append", default=[],
                        metavar="GROUP=SIZE", help="limit for every process of a group (repeatable)")
    memmon.add_argument("-a", "--any", type=_size, metavar="SIZE",
                        help="limit for every other process of supervisord")
    memmon.add_argument("-c", "--cumulative", action="store_true",
                        help="judge each process with all its descendants (= --children sum)")
    memmon.add_argument("-m", "--email", metavar="ADDR", help="mail this address on each restart")
    memmon.add_argument("-s", "--sendmail_program", "--sendmail-program", dest="sendmail_program",
                        metavar="CMD", help='sendmail command (default "/usr/sbin/sendmail -t -i")')
    memmon.add_argument("-u", "--uptime", type=_duration, metavar="DURATION",
                        help="mail only when the restarted process had been up at most this long")
    memmon.add_argument("-n", "--name", metavar="NAME", help="name of this watchdog in mail subjects")

    more = p.add_argument_group("measuring and acting")
    more.add_argument("--measure", choices=MEASURES, help="memory figure: rss (default), pss, uss")
    more.add_argument("--children", choices=CHILDREN_MODES,
                      help="none (default): the supervised pid; sum: the whole tree; "
                      "each: every descendant on its own")
    more.add_argument("--child-signal", type=_signal, metavar="SIG",
                      help="with --children each: signal the offending child instead of restarting")
    more.add_argument("--consecutive", type=_positive_int, metavar="N",
                      help="act after N consecutive samples over the limit (default 1)")
    more.add_argument("--grace", type=_duration, metavar="DURATION",
                      help="leave a process alone until it has run this long (default 0)")
    more.add_argument("--max-restarts", type=_non_negative_int, metavar="N",
                      help="at most N restarts of a process per --restart-window (default 0: no limit)")
    more.add_argument("--restart-window", type=_positive_duration, metavar="DURATION",
                      help="window of --max-restarts (default 1h)")
    more.add_argument("--max-parallel", type=_positive_int, metavar="N",
                      help="at most N processes of a group restarting at once (default 1)")
    more.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                      help="glob on group:process never to touch (repeatable)")
    more.add_argument("--dry-run", action="store_true", help="decide and report, never act")

    conn = p.add_argument_group("connection, metrics, logging")
    conn.add_argument("--server-url", metavar="URL",
                      help="supervisord URL (default $SUPERVISOR_SERVER_URL, else "
                      f"{DEFAULT_SERVER_URL})")
    conn.add_argument("--username", metavar="USER", help="default $SUPERVISOR_USERNAME")
    conn.add_argument("--password", metavar="PASSWORD", help="default $SUPERVISOR_PASSWORD")
    conn.add_argument("--rpc-timeout", type=_positive_duration, metavar="DURATION",
                      help="timeout of each XML-RPC call (default 10s)")
    conn.add_argument("--metrics-addr", metavar="ADDR", help="default 127.0.0.1")
    conn.add_argument("--metrics-port", type=_port, metavar="PORT", help="default 9870, 0 = off")
    conn.add_argument("--metrics-tls-cert", metavar="FILE", help="serve /metrics over HTTPS")
    conn.add_argument("--metrics-tls-key", metavar="FILE")
    conn.add_argument("--metrics-tls-client-ca", metavar="FILE",
                      help="with TLS: accept only clients with a certificate signed by this CA")
    conn.add_argument("--state-dir", metavar="DIR",
                      help="where the restart journal lives (default /var/lib/sentry-memwatch "
                      "as root, else ~/.local/state/sentry-memwatch)")
    conn.add_argument("--log-level", type=_log_level, metavar="LEVEL", help="default info")
    conn.add_argument("--log-format", choices=("text", "json"), help="default text")
    conn.add_argument("--config", metavar="FILE", help="INI file, keys are long option names")
    return p


# --- config file ---


def read_ini(text: str, path: str) -> list[tuple[int, str, str]]:
    """(line, key, value) entries of an INI text; one section of any name, `#`/`;` comments."""
    entries: list[tuple[int, str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            continue
        if raw[:1].isspace() and entries:  # continuation of a multi-line value
            last = entries[-1]
            entries[-1] = (last[0], last[1], f"{last[2]}\n{line}")
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        key, sep, value = (line[:cut], line[cut], line[cut + 1:]) if cut >= 0 else (line, "", "")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{lineno}: expected 'key = value', got {line!r}")
        entries.append((lineno, key.strip().replace("_", "-"), value.strip()))
    return entries


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def file_to_argv(parser: argparse.ArgumentParser, text: str, path: str) -> list[str]:
    """Turn config-file entries into argv tokens, checking each value with its line number."""
    by_option = {s: a for a in parser._actions for s in a.option_strings}  # noqa: SLF001
    argv: list[str] = []
    for lineno, key, value in read_ini(text, path):
        option = f"--{key}"
        if key == "sendmail-program":
            option = "--sendmail_program"
        action = by_option.get(option)
        if action is None or key in ("config", "help"):
            raise ConfigError(f"{path}:{lineno}: unknown option {key!r}")
        if action.nargs == 0:  # a switch
            if value.lower() not in _TRUE | _FALSE:
                raise ConfigError(f"{path}:{lineno}: {key} = {value!r} is not true or false")
            if value.lower() in _TRUE:
                # the file's `cumulative` is a --children value, so the command line can override it
                argv.append("--children=sum" if key == "cumulative" else option)
            continue
        values = value.split() if isinstance(action, argparse._AppendAction) else [value]  # noqa: SLF001
        for item in values:
            try:
                if action.type is not None:
                    action.type(item)  # type: ignore[operator]
            except argparse.ArgumentTypeError as exc:
                raise ConfigError(f"{path}:{lineno}: {key}: {exc}") from None
            if action.choices is not None and item not in action.choices:
                choices = ", ".join(map(str, action.choices))
                raise ConfigError(f"{path}:{lineno}: {key} = {item!r} is not one of {choices}")
            argv.append(f"{option}={item}")  # one token: a value may start with '-'
    return argv


# --- the whole thing ---


def parse(argv: Sequence[str], environ: dict[str, str] | None = None) -> tuple[Config, bool]:
    """argv (without the program name) -> (Config, is_check). Raises ConfigError."""
    environ = dict(os.environ) if environ is None else environ
    argv = list(argv)
    is_check = bool(argv) and argv[0] == "check"
    if is_check:
        argv = argv[1:]
    parser = build_parser()
    first = parser.parse_args(argv)
    file_argv: list[str] = []
    if first.config:
        file_argv = file_to_argv(parser, _read_text(first.config), first.config)
    ns = parser.parse_args(file_argv + argv)  # the command line comes last, so it wins
    if first.cumulative and first.children not in (None, "sum"):
        raise ConfigError(f"-c/--cumulative conflicts with --children {first.children}")
    ns.children = first.children or ("sum" if first.cumulative else None) or ns.children
    return _to_config(ns, environ, first.config), is_check


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


def _last_wins(pairs: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    return tuple(dict(pairs).items())


def _to_config(ns: argparse.Namespace, environ: dict[str, str], config_file: str | None) -> Config:
    children = ns.children or "none"
    if ns.child_signal is not None and children != "each":
        raise ConfigError("--child-signal needs --children each")
    if bool(ns.metrics_tls_cert) != bool(ns.metrics_tls_key):
        raise ConfigError("--metrics-tls-cert and --metrics-tls-key go together")
    if ns.metrics_tls_client_ca and not ns.metrics_tls_cert:
        raise ConfigError("--metrics-tls-client-ca needs --metrics-tls-cert and --metrics-tls-key")
    defaults = Config()
    return Config(
        limits=Limits(
            programs=_last_wins(ns.program),
            groups=_last_wins(ns.group),
            any=ns.any,
        ),
        children=children,
        measure=ns.measure or defaults.measure,
        email=ns.email,
        sendmail=ns.sendmail_program or defaults.sendmail,
        uptime=ns.uptime,
        name=ns.name,
        consecutive=ns.consecutive or defaults.consecutive,
        grace=_given(ns.grace, defaults.grace),
        max_restarts=_given(ns.max_restarts, defaults.max_restarts),
        restart_window=_given(ns.restart_window, defaults.restart_window),
        max_parallel=ns.max_parallel or defaults.max_parallel,
        child_signal=ns.child_signal,
        exclude=tuple(ns.exclude),
        dry_run=ns.dry_run,
        server_url=ns.server_url or environ.get("SUPERVISOR_SERVER_URL") or defaults.server_url,
        username=ns.username or environ.get("SUPERVISOR_USERNAME") or None,
        password=ns.password or environ.get("SUPERVISOR_PASSWORD") or None,
        rpc_timeout=_given(ns.rpc_timeout, defaults.rpc_timeout),
        metrics_addr=ns.metrics_addr or defaults.metrics_addr,
        metrics_port=_given(ns.metrics_port, defaults.metrics_port),
        metrics_tls_cert=ns.metrics_tls_cert,
        metrics_tls_key=ns.metrics_tls_key,
        metrics_tls_client_ca=ns.metrics_tls_client_ca,
        state_dir=ns.state_dir,
        log_level=ns.log_level or defaults.log_level,
        log_format=ns.log_format or defaults.log_format,
        config_file=config_file,
    )
