"""Every setting, declared once: its flags, value type, default, rules-file key, the commands that
take it and its help. The command line (listener.config.flags), the rules file
(listener.config.rulesfile), `--help` of each command and README's flag table are all made from
these declarations; `Config` and `AdviseOptions` carry theirs on their fields, and a rule's
strategy settings take their defaults from listener.core.rules.Strategy, the value type the
policy reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from listener.config import values
from listener.core.pressure import PressureSettings
from listener.core.rules import CHILDREN_MODES, MEASURES, Rules, Strategy
from listener.core.text import format_duration

LISTEN, CHECK, ADVISE = "listen", "check", "advise"
COMMANDS = (LISTEN, CHECK, ADVISE)
EVERY = frozenset(COMMANDS)
JUDGING = frozenset({LISTEN, CHECK, ADVISE})  # the rules: check and advise judge as the listener
MEMMON, ACTING, CONNECTION, ADVISING = (
    "memmon-compatible options", "measuring and acting", "connection, metrics, logging", "advise")
GROUPS = (MEMMON, ACTING, CONNECTION, ADVISING)
DEFAULT_SERVER_URL = "unix:///var/run/supervisor.sock"


@dataclass(frozen=True)
class Setting:
    name: str  # the field it sets (Config, AdviseOptions, Strategy) or the rules it makes
    flags: tuple[str, ...]
    help: str
    group: str
    default: Any = None
    shown: str | None = None  # the default as help and README write it; None: from `default`
    convert: Callable[[str], Any] | None = None  # None: the text as given
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    commands: frozenset[str] = EVERY
    kind: str = "value"  # value, switch (no value), repeat (may be given several times)
    env: str | None = None  # environment variable read when the flag is not given
    in_file: bool = True  # may be a key of the rules file's [memwatch] section
    rule_key: bool = False  # may also be a rule's own setting (`children = auto` in [group:x])
    reloads: bool = False  # a Config field a SIGHUP puts in force; the others need a restart

    @property
    def key(self) -> str:
        """The rules-file key: the long flag without its dashes."""
        return self.flags[-1].removeprefix("--").replace("_", "-")

    @property
    def default_text(self) -> str:
        if self.shown is not None:
            return self.shown
        if self.kind == "switch":
            return "off"
        if self.default in (None, ()):
            return "none"
        if isinstance(self.default, float):
            return format_duration(self.default)
        return str(self.default)


def option(*flags: str, help: str, group: str, default: Any = None, repr: bool = True,
           **more: Any) -> Any:
    """A dataclass field that carries its setting (named after the field, see `declared`)."""
    setting = Setting("", flags, help, group, default, **more)
    return field(default=default, repr=repr, metadata={"setting": setting})


def declared(cls: type) -> tuple[Setting, ...]:
    return tuple(dataclasses.replace(f.metadata["setting"], name=f.name)
                 for f in dataclasses.fields(cls) if "setting" in f.metadata)


@dataclass(frozen=True)
class AdviseOptions:
    duration: float = option("--duration", default=60.0, convert=values.positive_duration,
                             metavar="DURATION", group=ADVISING, commands=frozenset({ADVISE}),
                             help="how long to observe the processes")
    interval: float = option("--interval", default=2.0, convert=values.positive_duration,
                             metavar="DURATION", group=ADVISING, commands=frozenset({ADVISE}),
                             help="time between two samples while observing")
    prometheus_url: str | None = option(
        "--prometheus", metavar="URL", group=ADVISING, commands=frozenset({ADVISE}),
        shown="none: observe live",
        help="read the listener's series from this Prometheus instead of observing live "
        "(e.g. http://prometheus:9090)")
    window: float = option("--window", default=7 * 86400.0, convert=values.positive_duration,
                           metavar="DURATION", group=ADVISING, commands=frozenset({ADVISE}),
                           help="with --prometheus: how far back to look")
    instance: str | None = option(
        "--instance", metavar="INSTANCE", group=ADVISING, commands=frozenset({ADVISE}),
        shown="the only one",
        help="with --prometheus: the listener's `instance` label (needed when Prometheus "
        "scrapes several hosts' listeners)")
    output_format: str = option("--format", default="table", choices=("table", "json"),
                                group=ADVISING, commands=frozenset({ADVISE}),
                                help="for people or for tools")


_LISTEN = frozenset({LISTEN})
_CONNECT = EVERY  # every command talks to supervisord


@dataclass(frozen=True)
class Config:
    rules: Rules = field(default_factory=Rules)  # made of the rule settings below
    email: str | None = option("-m", "--email", metavar="ADDR", group=MEMMON, commands=_LISTEN,
                               help="mail this address on each restart")
    sendmail: str = option("-s", "--sendmail-program", "--sendmail_program", metavar="CMD",
                           default="/usr/sbin/sendmail -t -i", group=MEMMON, commands=_LISTEN,
                           help="the sendmail command mail goes through")
    uptime: float | None = option("-u", "--uptime", convert=values.duration, metavar="DURATION",
                                  group=MEMMON, commands=_LISTEN, shown="off: every restart",
                                  help="mail only when the restarted process had been up at "
                                  "most this long")
    name: str | None = option("-n", "--name", metavar="NAME", group=MEMMON, commands=_LISTEN,
                              help="name of this watchdog in mail subjects")
    dry_run: bool = option("--dry-run", default=False, kind="switch", group=ACTING,
                           commands=_LISTEN, reloads=True, help="decide and report, never act")
    pressure_psi: float | None = option(
        "--pressure-psi", convert=values.percent, metavar="PERCENT", group=ACTING,
        commands=_LISTEN, shown="off", reloads=True,
        help="the host is under memory pressure while PSI memory 'some avg10' is at least this "
        "(left below half of it, after a minute at least); rules' pressure-limit then apply")
    pressure_available: int | None = option(
        "--pressure-available", convert=values.size, metavar="SIZE", group=ACTING,
        commands=_LISTEN, shown="off", reloads=True,
        help="the host is under memory pressure while MemAvailable is below this (left above "
        "1.25 times it, after a minute at least)")
    server_url: str = option("--server-url", metavar="URL", default=DEFAULT_SERVER_URL,
                             env="SUPERVISOR_SERVER_URL", group=CONNECTION,
                             shown=f"$SUPERVISOR_SERVER_URL, else {DEFAULT_SERVER_URL}",
                             help="supervisord's URL: unix:///path or http://host:port")
    username: str | None = option("--username", metavar="USER", env="SUPERVISOR_USERNAME",
                                  group=CONNECTION, shown="$SUPERVISOR_USERNAME",
                                  help="supervisord's user name")
    password: str | None = option("--password", metavar="PASSWORD", env="SUPERVISOR_PASSWORD",
                                  group=CONNECTION, shown="$SUPERVISOR_PASSWORD", repr=False,
                                  help="supervisord's password")
    rpc_timeout: float = option("--rpc-timeout", default=10.0, convert=values.positive_duration,
                                metavar="DURATION", group=CONNECTION,
                                help="the whole time one call to supervisord (or to Prometheus, "
                                "or another listener) may take, so that a hung or trickling "
                                "server never hangs the loop")
    resync: float = option("--resync", default=300.0, convert=values.positive_duration,
                           metavar="DURATION", group=CONNECTION, commands=_LISTEN, reloads=True,
                           help="with PROCESS_STATE events subscribed: list every process again "
                           "this often anyway")
    tick_timeout: float = option("--tick-timeout", default=65.0, convert=values.positive_duration,
                                 metavar="DURATION", group=CONNECTION, commands=_LISTEN,
                                 help="no TICK event this long (since the start, or the last "
                                 "one) is said in the log, /status and the page (TICK_5 missing "
                                 "from events=); the default allows TICK_60")
    metrics_addr: str = option("--metrics-addr", default="127.0.0.1", metavar="ADDR",
                               group=CONNECTION, commands=_LISTEN,
                               help="address of /metrics, /status and the status page")
    metrics_port: int = option("--metrics-port", default=9870, convert=values.port,
                               metavar="PORT", group=CONNECTION, commands=_LISTEN,
                               help="port of /metrics, /status and the status page; 0 turns "
                               "them off")
    metrics_tls_cert: str | None = option("--metrics-tls-cert", metavar="FILE", group=CONNECTION,
                                          commands=_LISTEN, help="serve them over HTTPS")
    metrics_tls_key: str | None = option("--metrics-tls-key", metavar="FILE", group=CONNECTION,
                                         commands=_LISTEN, help="the key of --metrics-tls-cert")
    metrics_tls_client_ca: str | None = option(
        "--metrics-tls-client-ca", metavar="FILE", group=CONNECTION, commands=_LISTEN,
        help="with TLS: accept only clients with a certificate signed by this CA")
    state_dir: str | None = option(
        "--state-dir", metavar="DIR", group=CONNECTION, commands=_LISTEN,
        shown="/var/lib/sentry-memwatch as root, else ~/.local/state/sentry-memwatch",
        help="where the restart journal lives")
    log_level: str = option("--log-level", default="INFO", convert=values.log_level,
                            metavar="LEVEL", group=CONNECTION, shown="info",
                            help="debug, info, warning or error; logs go to stderr")
    log_format: str = option("--log-format", default="text", choices=("text", "json"),
                             group=CONNECTION, help="timestamped key=value lines, or JSON")
    config_file: str | None = option("--config", metavar="FILE", group=CONNECTION,
                                     in_file=False, help="the rules file; the command line wins")
    listener_url: str | None = option(
        "--listener", metavar="URL", group=CONNECTION, commands=frozenset({CHECK}),
        in_file=False, help="show a running listener's own view, from URL/status (e.g. "
        "http://127.0.0.1:9870)")
    command: str = LISTEN
    advise: AdviseOptions = field(default_factory=AdviseOptions)

    @property
    def strategy(self) -> Strategy:
        return self.rules.strategy

    @property
    def pressure(self) -> PressureSettings:
        return PressureSettings(self.pressure_psi, self.pressure_available)


_STRATEGY = {f.name: f.default for f in dataclasses.fields(Strategy)}


def _strategy(name: str, convert: Callable[[str], Any], help: str, shown: str | None = None,
              metavar: str | None = None, choices: tuple[str, ...] | None = None) -> Setting:
    """A setting of the default strategy, and a key a rule may set for itself."""
    return Setting(name, (f"--{name.replace('_', '-')}",), help, ACTING, _STRATEGY[name], shown,
                   convert, choices, metavar, JUDGING, rule_key=True)


STRATEGY = (
    _strategy("measure", values.choice(*MEASURES), choices=MEASURES,
              help="the memory figure: PSS and USS count shared pages honestly"),
    _strategy("children", values.choice(*CHILDREN_MODES), choices=CHILDREN_MODES,
              help="none: the supervised pid; sum: the whole tree; each: every descendant on "
              "its own; auto: as the server found (uWSGI: each worker, HUP; gunicorn: each "
              "worker, TERM; Celery: each child, program restart; anything else: none)"),
    _strategy("child_signal", values.signal_number, metavar="SIG",
              help="with children each (or auto): signal the offending child (HUP for uWSGI) "
              "instead of restarting; a signalled child is never signalled again"),
    _strategy("child_signal_timeout", values.positive_duration, metavar="DURATION",
              help="a signalled child still running this long after is escalated, once, to a "
              "restart of its program"),
    _strategy("consecutive", values.positive_int, metavar="N",
              help="act after N consecutive samples over the limit"),
    _strategy("grace", values.duration, metavar="DURATION",
              help="leave a process alone until it has run this long"),
    _strategy("max_restarts", values.non_negative_int, metavar="N", shown="0: no limit",
              help="at most N restarts of a process per --restart-window"),
    _strategy("restart_window", values.positive_duration, metavar="DURATION",
              help="the window of --max-restarts"),
    _strategy("pressure_limit", values.memory_limit, metavar="SIZE", shown="none",
              help="a lower limit that applies while the host is under memory pressure (as the "
              "listener's pressure PSI and available settings say): the one process furthest "
              "over it is replaced, as its strategy says, one at a time per host, at most one "
              "a minute"),
    _strategy("max_parallel", values.positive_int, metavar="N",
              help="processes of one group restarting at once (rolling restarts); a member "
              "supervisord is starting, retrying or stopping (STARTING, BACKOFF, STOPPING) takes "
              "a slot whoever moved it, one that stays down (FATAL, EXITED, STOPPED) does not, so "
              "it cannot hold the group's restarts back for good"),
    _strategy("oom_score_adj", values.oom_score_adj, metavar="N", shown="none: left as it is",
              help="-1000 to 1000, written to /proc/PID/oom_score_adj of the process and of every "
              "worker of its tree, once per process start: a higher one makes the kernel's OOM "
              "killer pick it (a worker its master replaces) before Redis or Postgres"),
)
RULE_KEYS: dict[str, Callable[[str], object]] = {
    s.key: s.convert for s in STRATEGY if s.convert is not None}


def _rule_flag(name: str, flags: tuple[str, ...], convert: Callable[[str, Any], Any],
               metavar: str, help: str) -> Setting:
    """-p, -g, -a: a limit, and optionally the rule's own strategy settings."""
    def checked(text: str) -> Any:
        return convert(text, RULE_KEYS)
    return Setting(name, flags, help, MEMMON, convert=checked, metavar=metavar,
                   commands=JUDGING, kind="value" if name == "any" else "repeat")


RULE_FLAGS = (
    _rule_flag("program", ("-p", "--program"), values.named_limit, "NAME=SIZE[,KEY=VALUE...]",
               "limit for a process: name, group:process or group:* (repeatable); KEY=VALUE "
               "gives the rule its own strategy, e.g. web=700MB,children=auto,measure=pss"),
    _rule_flag("group", ("-g", "--group"), values.group_limit, "GROUP=SIZE[,KEY=VALUE...]",
               "limit for every process of a group (repeatable)"),
    _rule_flag("any", ("-a", "--any"), values.any_limit, "SIZE[,KEY=VALUE...]",
               "limit for every other process of supervisord (never the listener itself)"),
    Setting("cumulative", ("-c", "--cumulative"), "judge each process with all its descendants "
            "(= --children sum)", MEMMON, False, kind="switch", commands=JUDGING),
)
EXCLUDE = Setting("exclude", ("--exclude",), "glob on group:process never to touch (repeatable)",
                  ACTING, (), metavar="PATTERN", kind="repeat", commands=JUDGING)

SETTINGS: tuple[Setting, ...] = tuple(sorted(
    (*RULE_FLAGS, *STRATEGY, EXCLUDE, *declared(Config), *declared(AdviseOptions)),
    key=lambda s: GROUPS.index(s.group)))


def for_command(command: str) -> tuple[Setting, ...]:
    return tuple(s for s in SETTINGS if command in s.commands)
