"""The command line: argparse with value types whose errors name the value (one line each)."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable

from listener import __version__
from listener.core.rules import CHILDREN_MODES, MEASURES
from listener.core.text import parse_duration, parse_size

DEFAULT_SERVER_URL = "unix:///var/run/supervisor.sock"


class ConfigError(ValueError):
    """A bad flag, value or config-file line; the message is one line that names it."""


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def memory_limit(text: str) -> int:
    """A memory limit. A bare number is bytes, as in memmon, but one below 1 MiB is almost
    certainly a forgotten unit (memmon's `-a 400` restarts every process on every tick)."""
    value = _size(text)
    bare = text.strip()
    if bare.isdigit() and value < 1024**2:
        raise argparse.ArgumentTypeError(
            f"{bare} is {value} bytes; did you mean {bare}MB? (write {bare}B for bytes)")
    return value


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


# A rule's own strategy: `-g sentry-web=700MB,children=auto,measure=pss` on the command line,
# `children = auto` in a [group:sentry-web] section. The same names as the listener-wide flags.
Overrides = tuple[tuple[str, object], ...]  # (Strategy field, value)


def _rule_spec(text: str) -> tuple[str, Overrides]:
    """`SIZE[,key=value...]` -> (SIZE, the strategy settings of that rule)."""
    size, *settings = text.split(",")
    overrides = []
    for setting in settings:
        key, sep, value = setting.partition("=")
        key = key.strip().replace("_", "-")
        if not sep or key not in RULE_KEYS:
            raise argparse.ArgumentTypeError(
                f"{setting.strip()!r} is not a rule setting (key=value; keys: {', '.join(RULE_KEYS)})")
        overrides.append(rule_setting(key, value))
    return size, tuple(overrides)


def rule_setting(key: str, value: str) -> tuple[str, object]:
    """One strategy setting of a rule, checked: (Strategy field, value)."""
    convert = RULE_KEYS[key]
    try:
        return key.replace("-", "_"), convert(value.strip())
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{key}: {exc}") from None


def _name_size(text: str) -> tuple[str, int, Overrides]:
    spec, overrides = _rule_spec(text)
    name, sep, size = spec.rpartition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=SIZE (e.g. sentry-web=400MB)")
    name = name.strip()
    if name.count(":") > 1 or name.startswith(":") or name.endswith(":"):
        raise argparse.ArgumentTypeError(f"{name!r} is not a process name, group:process or group:*")
    return name, memory_limit(size), overrides


def _group_size(text: str) -> tuple[str, int, Overrides]:
    name, size, overrides = _name_size(text)
    if ":" in name:
        raise argparse.ArgumentTypeError(f"{name!r} is not a group name (no ':' allowed)")
    return name, size, overrides


def _any_size(text: str) -> tuple[int, Overrides]:
    size, overrides = _rule_spec(text)
    return memory_limit(size), overrides


def _choice(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return text
    return convert


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


RULE_KEYS: dict[str, Callable[[str], object]] = {
    "measure": _choice(*MEASURES),
    "children": _choice(*CHILDREN_MODES),
    "child-signal": _signal,
    "child-signal-timeout": _positive_duration,
    "consecutive": _positive_int,
    "grace": _duration,
    "max-restarts": _non_negative_int,
    "restart-window": _positive_duration,
    "max-parallel": _positive_int,
}


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
        usage=f"{prog} [check|advise] [options]",
        description="Restart supervisord processes that use too much memory (a drop-in for "
        "superlance's memmon), with Prometheus metrics. `check` prints a table once and exits "
        "0 (none over), 1 (some over) or 2 (error). `advise` observes every program and says "
        "what limit each should get and how many processes of it the host can hold.",
    )
    p.add_argument("--version", action="version", version=f"{prog} {__version__}")
    memmon = p.add_argument_group("memmon-compatible options")
    memmon.add_argument("-p", "--program", type=_name_size, action="append", default=[],
                        metavar="NAME=SIZE[,KEY=VALUE...]",
                        help="limit for a process: name, group:process or group:* (repeatable); "
                        "KEY=VALUE gives the rule its own strategy, e.g. "
                        "web=700MB,children=auto,measure=pss")
    memmon.add_argument("-g", "--group", type=_group_size, action="append", default=[],
                        metavar="GROUP=SIZE[,KEY=VALUE...]",
                        help="limit for every process of a group (repeatable)")
    memmon.add_argument("-a", "--any", type=_any_size, metavar="SIZE[,KEY=VALUE...]",
                        help="limit for every other process of supervisord")
    memmon.add_argument("-c", "--cumulative", action="store_true",
                        help="judge each process with all its descendants (= --children sum)")
    memmon.add_argument("-m", "--email", metavar="ADDR", help="mail this address on each restart")
    memmon.add_argument("-s", "--sendmail_program", "--sendmail-program", dest="sendmail_program",
                        metavar="CMD", help='sendmail command (default "/usr/sbin/sendmail -t -i")')
    memmon.add_argument("-u", "--uptime", type=_duration, metavar="DURATION",
                        help="mail only when the restarted process had been up at most this long")
    memmon.add_argument("-n", "--name", metavar="NAME", help="name of this watchdog in mail subjects")

    more = p.add_argument_group(
        "measuring and acting",
        "The default strategy of every rule; a rule's own KEY=VALUE settings (the same names "
        "without --) win over these.")
    more.add_argument("--measure", choices=MEASURES, help="memory figure: rss (default), pss, uss")
    more.add_argument("--children", choices=CHILDREN_MODES,
                      help="none (default): the supervised pid; sum: the whole tree; "
                      "each: every descendant on its own; auto: as the server found (uWSGI: "
                      "each worker, HUP; gunicorn: each worker, TERM; Celery: each child, "
                      "program restart; anything else: none)")
    more.add_argument("--child-signal", type=_signal, metavar="SIG",
                      help="with --children each (or auto): signal the offending child instead "
                      "of restarting")
    more.add_argument("--child-signal-timeout", type=_positive_duration, metavar="DURATION",
                      help="restart the program if a signalled child still runs this long after "
                      "(default 90s)")
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
    conn.add_argument("--resync", type=_positive_duration, metavar="DURATION",
                      help="with PROCESS_STATE events subscribed: list every process again this "
                      "often anyway (default 5m)")
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
    conn.add_argument("--listener", metavar="URL",
                      help="with check: show a running listener's own view, from URL/status "
                      "(e.g. http://127.0.0.1:9870)")

    advise = p.add_argument_group("advise")
    advise.add_argument("--duration", type=_positive_duration, metavar="DURATION",
                        help="how long to observe the processes (default 60s)")
    advise.add_argument("--interval", type=_positive_duration, metavar="DURATION",
                        help="time between two samples while observing (default 2s)")
    advise.add_argument("--prometheus", metavar="URL",
                        help="read the listener's series from this Prometheus instead of "
                        "observing live (e.g. http://prometheus:9090)")
    advise.add_argument("--window", type=_positive_duration, metavar="DURATION",
                        help="with --prometheus: how far back to look (default 7d)")
    advise.add_argument("--instance", metavar="INSTANCE",
                        help="with --prometheus: the listener's `instance` label (needed when "
                        "Prometheus scrapes several hosts' listeners)")
    advise.add_argument("--format", choices=("table", "json"), help="default table")
    return p
