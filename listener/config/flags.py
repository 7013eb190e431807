"""The command line of each command, its --help, and README's flag table: all made from the
declarations in listener.config.settings."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from listener import __version__
from listener.config.settings import (
    ADVISE,
    CHECK,
    COMMANDS,
    EVERY,
    GROUPS,
    LISTEN,
    SETTINGS,
    STRATEGY,
    Setting,
)
from listener.config.values import ConfigError
from listener.core.text import one_line

PROG = "sentry-memwatch"
ABOUT = {
    LISTEN: "A supervisord event listener: restart the processes that use too much memory (a "
    "drop-in for superlance's memmon), with Prometheus metrics and a status page. Commands: "
    "check, advise (each has its own --help).",
    CHECK: "One look at every process supervisord runs, as a table; exit 0 (none over its "
    "limit), 1 (some over) or 2 (error). Without limits or --config, judges with the rules of "
    "the sentry-memwatch listener supervisord runs.",
    ADVISE: "Observe every program (or read the listener's series from Prometheus) and say what "
    "limit each should get and how many processes of it the host can hold.",
}


RULES_FILE = (
    "The rules file (--config FILE; supervisord's format: ';' comments, 'key = value'): "
    "[memwatch] holds the listener's settings, the long flag names as keys (metrics-port = "
    "9870), and the defaults of every rule; a rule is [program:NAME] (NAME as -p takes it), "
    "[group:NAME] or [any], with 'limit = SIZE' and any of: "
    + ", ".join(s.key for s in STRATEGY) + ". The most specific rule wins; the command line "
    "wins over the file. A rules file without a limit restarts nothing.")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(one_line(message))


def build_parser(command: str = LISTEN, also: Iterable[str] = ()) -> argparse.ArgumentParser:
    """The flags `command` takes, with their help. Flags of the commands in `also` are
    accepted too, without help: check and advise read a listener's command line."""
    usage = f"{PROG} [options]" if command == LISTEN else f"{PROG} {command} [options]"
    p = _Parser(prog=PROG, usage=usage, description=ABOUT[command], epilog=RULES_FILE)
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    groups: dict[str, Any] = {}
    accepted = {command, *also}
    for s in SETTINGS:
        if not accepted & s.commands:
            continue
        shown = command in s.commands
        if shown and s.group not in groups:
            groups[s.group] = p.add_argument_group(s.group)
        where = groups[s.group] if shown else p
        where.add_argument(*s.flags, **_argument(s, shown))
    return p


def _argument(s: Setting, shown: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dest": s.name, "default": None,
                              "help": help_text(s) if shown else argparse.SUPPRESS}
    if s.kind == "switch":
        return {**kwargs, "action": "store_true"}
    if s.kind == "repeat":
        kwargs["action"] = "append"
    if s.choices:
        kwargs["choices"] = s.choices  # argparse names them in its error
    elif s.convert is not None:
        kwargs["type"] = s.convert
    if s.metavar:
        kwargs["metavar"] = s.metavar
    return kwargs


def help_text(s: Setting) -> str:
    said_default = s.kind != "switch" and (s.default not in (None, ()) or s.shown is not None)
    return f"{s.help} (default {s.default_text})" if said_default else s.help


def misplaced(argv: Iterable[str], command: str) -> str | None:
    """The first flag of argv that belongs to another command, said so."""
    by_flag = {f: s for s in SETTINGS for f in s.flags}
    for token in argv:
        flag = token.split("=", 1)[0]
        s = by_flag.get(flag)
        if s is None or command in s.commands:
            continue
        others = [c for c in COMMANDS if c in s.commands]
        if others == [LISTEN]:
            return f"{flag} goes with the listener ({PROG} {flag} ...), not with {command}"
        return f"{flag} goes with {others[0]} ({PROG} {others[0]} {flag} ...)"
    return None


def flag_table() -> str:
    """README's table of every flag, made from the declarations (a test holds README to it)."""
    lines = ["| flag | default | commands | meaning |", "| --- | --- | --- | --- |"]
    for group in GROUPS:
        for s in (s for s in SETTINGS if s.group == group):
            lines.append(f"| {_spelled(s)} | {_cell(s.default_text)} | {_commands(s)} | "
                         f"{_cell(s.help)} |")
    return "\n".join(lines) + "\n"


def _spelled(s: Setting) -> str:
    flags = "/".join(s.flags)
    value = "|".join(s.choices) if s.choices else (s.metavar or "")
    return _cell(f"`{flags} {value}`" if value else f"`{flags}`")


def _commands(s: Setting) -> str:
    return "all" if s.commands == EVERY else ", ".join(c for c in COMMANDS if c in s.commands)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
