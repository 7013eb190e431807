"""The --config file, read with configparser (supervisord's own format builds on it too).

    [memwatch]                 ; listener-wide settings, and the defaults every rule inherits:
    server-url = unix:///run/supervisor.sock      ; keys are the long option names
    measure = pss
    consecutive = 3

    [group:sentry-web]         ; a rule: a limit and, optionally, its own strategy
    limit = 700MB
    children = auto

    [program:sentry-worker:*]  ; NAME as -p takes it: name, group:name or group:*
    limit = 400MB

    [any]
    limit = 1GB

Every section becomes argv tokens (a rule section one `--group NAME=SIZE,key=value...`), so
that argparse and the command line share one path; each value is checked here first, so that
every error names file:line. A file without any section header is one [memwatch] section (the
format before rules had sections)."""

from __future__ import annotations

import argparse
import configparser
import itertools
from collections.abc import Callable, Collection

from listener.config.settings import RULE_KEYS, SETTINGS, Setting
from listener.config.values import ConfigError, memory_limit, rule_setting

LISTENER_SECTIONS = ("memwatch", "sentry-memwatch")
# each rule and each [memwatch] value becomes an argv token, and argparse takes time that grows
# with the square of their number: 500 parse in ~40 ms, 10,000 took 16 s of the event loop
MAX_ITEMS = 500
RULE_KINDS = {"program": "--program", "group": "--group", "any": "--any"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class _Parser(configparser.RawConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr.strip().lower().replace("_", "-")


def _lines(text: str, parser: _Parser) -> dict[tuple[str, str], int]:
    """(section, key) -> line number: configparser keeps no line numbers, its regexes find them."""
    found: dict[tuple[str, str], int] = {}
    section = ""
    for lineno, line in enumerate(text.split("\n"), 1):
        if line[:1].isspace():
            continue
        header = parser.SECTCRE.match(line)
        if header:
            section = header.group("header")
            found[(section, "")] = lineno
            continue
        option = parser.OPTCRE.match(line)
        if option and not line.lstrip().startswith(("#", ";")):
            found.setdefault((section, parser.optionxform(option.group("option"))), lineno)
    return found


def _line(lines: dict[tuple[str, str], int], section: str, key: str) -> int:
    """A key's line; its section's where the key's own was not found (an indented first key)."""
    return lines.get((section, key)) or lines.get((section, ""), 1)


def read_sections(text: str, path: str) -> tuple[_Parser, dict[tuple[str, str], int]]:
    meaningful = [(n, line) for n, line in enumerate(text.split("\n"), 1)
                  if line.strip() and not line.lstrip().startswith(("#", ";"))]
    shift = 0
    if meaningful and not meaningful[0][1].startswith("["):
        if any(line.startswith("[") for _, line in meaningful):
            raise ConfigError(f"{path}:{meaningful[0][0]}: a setting before the first [section]")
        text, shift = "[memwatch]\n" + text, 1  # the format before rules had sections
    parser = _Parser(interpolation=None, strict=True, delimiters=("=", ":"),
                     comment_prefixes=("#", ";"), inline_comment_prefixes=(";",),
                     empty_lines_in_values=False, default_section="\0none")
    try:
        parser.read_string(text, source=path)
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(f"{path}:{(exc.lineno or 0) - shift}: [{exc.section}] appears twice") from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(f"{path}:{(exc.lineno or 0) - shift}: {exc.option} is given twice in "
                          f"[{exc.section}] (list several values on one line)") from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(f"{path}:{exc.lineno - shift}: expected a [section], got "
                          f"{exc.line.strip()!r}") from None
    except configparser.ParsingError as exc:
        lineno, line = exc.errors[0]
        raise ConfigError(f"{path}:{lineno - shift}: expected 'key = value', got "
                          f"{line.strip()!r}") from None
    lines = {key: n - shift for key, n in _lines(text, parser).items() if n > shift}
    return parser, lines


def file_to_argv(text: str, path: str, accepted: Collection[str]) -> list[str]:
    """Turn the file's sections into argv tokens, checking each value with its line number.
    One file serves every command: a [memwatch] setting the command does not take (not in
    `accepted`, names of settings) is checked and left out."""
    headers = (n for n, line in enumerate(text.split("\n"), 1) if line.startswith("["))
    over = next(itertools.islice(headers, MAX_ITEMS, None), None)
    if over is not None:  # counted before configparser, whose time grows faster than the file
        raise _too_many(f"{path}:{over}")
    sections, lines = read_sections(text, path)
    argv: list[str] = []
    for section in sections.sections():
        where = f"{path}:{lines.get((section, ''), 1)}"
        if section in LISTENER_SECTIONS:
            for key, value in sections.items(section):
                argv += _option(key, value, f"{path}:{_line(lines, section, key)}", accepted)
                if len(argv) > MAX_ITEMS:
                    raise _too_many(f"{path}:{_line(lines, section, key)}")
            continue
        kind, _, name = section.partition(":")
        if kind not in RULE_KINDS or (kind == "any") == bool(name) or (
                kind == "group" and ":" in name):
            raise ConfigError(f"{where}: unknown section [{section}]; expected [memwatch], "
                              "[program:NAME], [group:NAME] or [any]")
        def line_of(key: str, section: str = section) -> str:
            return f"{path}:{_line(lines, section, key)}"
        argv.append(_rule(kind, name, dict(sections.items(section)), section, line_of, where))
    return argv


def _too_many(where: str) -> ConfigError:
    return ConfigError(f"{where}: more than {MAX_ITEMS} rules and values, the most a rules "
                       "file may hold")


def _rule(kind: str, name: str, keys: dict[str, str], section: str,
          line_of: Callable[[str], str], where: str) -> str:
    """A rule section as one token: --group=NAME=SIZE,key=value..."""
    if "limit" not in keys:
        raise ConfigError(f"{where}: [{section}] has no limit (limit = SIZE)")
    settings = []
    for key, value in keys.items():
        if key == "limit":
            continue
        if key not in RULE_KEYS:
            raise ConfigError(f"{line_of(key)}: {key!r} is not a setting of a rule "
                              f"(limit, {', '.join(RULE_KEYS)})")
        try:
            rule_setting(key, value, RULE_KEYS)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{line_of(key)}: {exc}") from None
        if "," in value:
            raise ConfigError(f"{line_of(key)}: {key} = {value!r}: one value only")
        settings.append(f",{key}={value.strip()}")
    limit = keys["limit"].strip()
    try:
        if "," in limit:
            raise argparse.ArgumentTypeError(f"{limit!r} is one size only")
        memory_limit(limit)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"{line_of('limit')}: limit: {exc}") from None
    if "child-signal" in keys and keys.get("children", "each").strip() not in ("each", "auto"):
        raise ConfigError(f"{line_of('child-signal')}: child-signal needs children = each "
                          "(or auto) in the same rule")
    spec = limit if kind == "any" else f"{name}={limit}"
    return f"{RULE_KINDS[kind]}={spec}{''.join(settings)}"


FILE_KEYS: dict[str, Setting] = {s.key: s for s in SETTINGS if s.in_file}


def _option(key: str, value: str, where: str, accepted: Collection[str]) -> list[str]:
    """A [memwatch] key as argv tokens (none when the command does not take it)."""
    setting = FILE_KEYS.get(key)
    if setting is None:
        raise ConfigError(f"{where}: unknown option {key!r}")
    option = setting.flags[-1]
    if setting.kind == "switch":
        if value.lower() not in _TRUE | _FALSE:
            raise ConfigError(f"{where}: {key} = {value!r} is not true or false")
        if value.lower() not in _TRUE or setting.name not in accepted:
            return []
        # the file's `cumulative` is a --children value, so the command line can override it
        return ["--children=sum" if key == "cumulative" else option]
    items = value.split() if setting.kind == "repeat" else [value]
    for item in items:
        try:
            if setting.convert is not None:
                setting.convert(item)
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from None
        if setting.choices is not None and item not in setting.choices:
            raise ConfigError(f"{where}: {key} = {item!r} is not one of {', '.join(setting.choices)}")
    if setting.name not in accepted:
        return []
    return [f"{option}={item}" for item in items]  # one token: a value may start with '-'
