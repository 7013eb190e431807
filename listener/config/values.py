"""The value types of settings: text in, a checked value out, or argparse's ArgumentTypeError with
one line that names the value (argparse and the rules file add the flag or file:line)."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Callable

from listener.core.text import format_size, parse_duration, parse_size

Invalid = argparse.ArgumentTypeError


class ConfigError(ValueError):
    """A bad flag, value or config-file line; the message is one line that names it."""


def size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def memory_limit(text: str) -> int:
    """A memory limit. A bare number is bytes, as in memmon, but one below 1 MiB is almost
    certainly a forgotten unit (memmon's `-a 400` restarts every process on every tick)."""
    value = size(text)
    bare = text.strip()
    if bare.isdigit() and value < 1024**2:
        raise Invalid(f"{bare} has no unit (it would be {value} bytes){_likely_unit(value)} "
                      f"sizes need a unit: write {bare}B for bytes")
    return value


def percent(text: str) -> float:
    """A share of time, in percent: more than 0, at most 100 ("20" or "20%")."""
    bare = text.strip().removesuffix("%").strip()
    try:
        value = float(bare)
    except ValueError:
        raise Invalid(f"{text!r} is not a percentage") from None
    if not 0 < value <= 100:
        raise Invalid(f"{text!r} is not a percentage (more than 0, at most 100)")
    return value


# The guide's limit (memmon -a 400MB): a bare number is read in the unit that puts it nearest.
_TYPICAL_LIMIT = 400 * 1024**2


def _likely_unit(number: int) -> str:
    """'; did you mean 100000KB (97.7MiB)?': the reading of a unitless number nearest (in ratio)
    to a typical limit; nothing for 0."""
    if number <= 0:
        return ";"
    readings = [(number * 1024**power, unit) for power, unit in ((1, "KB"), (2, "MB"), (3, "GB"))]
    n_bytes, unit = min(readings, key=lambda r: max(r[0], _TYPICAL_LIMIT) / min(r[0], _TYPICAL_LIMIT))
    return f"; did you mean {number}{unit} ({format_size(n_bytes)})?"


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def positive_duration(text: str) -> float:
    value = duration(text)
    if value <= 0:
        raise Invalid(f"{text!r} must be more than 0")
    return value


def whole(text: str, low: int, high: int | None = None, what: str = "") -> int:
    text = text.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise Invalid(f"{text!r} is not a whole number")
    value = int(text)
    if value < low or (high is not None and value > high):
        bounds = f"{low}-{high}" if high is not None else f"at least {low}"
        raise Invalid(f"{text!r} is not {what or 'a number'} ({bounds})")
    return value


def positive_int(text: str) -> int:
    return whole(text, 1)


def non_negative_int(text: str) -> int:
    return whole(text, 0)


def oom_score_adj(text: str) -> int:
    return whole(text, -1000, 1000, "an oom_score_adj")


def port(text: str) -> int:
    return whole(text, 0, 65535, "a port")


def signal_number(text: str) -> int:
    name = text.strip().upper()
    if name.isdigit():
        try:
            return int(signal.Signals(int(name)))
        except ValueError:
            raise Invalid(f"{text!r} is not a signal number") from None
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise Invalid(f"{text!r} is not a signal (e.g. HUP, TERM)") from None


def choice(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise Invalid(f"{text!r} is not one of {', '.join(choices)}")
        return text
    return convert


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise Invalid(f"{text!r} is not a log level (debug, info, warning, error)")
    return level


# A rule's own strategy: `-g sentry-web=700MB,children=auto,measure=pss` on the command line,
# `children = auto` in a [group:sentry-web] section.
Overrides = tuple[tuple[str, object], ...]  # (Strategy field, value)


def rule_spec(text: str, keys: dict[str, Callable[[str], object]]) -> tuple[str, Overrides]:
    """`SIZE[,key=value...]` -> (SIZE, the strategy settings of that rule)."""
    limit, *settings = text.split(",")
    overrides = []
    for setting in settings:
        key, sep, value = setting.partition("=")
        key = key.strip().replace("_", "-")
        if not sep or key not in keys:
            raise Invalid(f"{setting.strip()!r} is not a rule setting (key=value; keys: "
                          f"{', '.join(keys)})")
        overrides.append(rule_setting(key, value, keys))
    return limit, tuple(overrides)


def rule_setting(key: str, value: str, keys: dict[str, Callable[[str], object]]
                 ) -> tuple[str, object]:
    """One strategy setting of a rule, checked: (Strategy field, value)."""
    try:
        return key.replace("-", "_"), keys[key](value.strip())
    except Invalid as exc:
        raise Invalid(f"{key}: {exc}") from None


def named_limit(text: str, keys: dict[str, Callable[[str], object]]
                ) -> tuple[str, int, Overrides]:
    """`NAME=SIZE[,key=value...]` (-p): NAME is a process, group:process or group:*."""
    spec, overrides = rule_spec(text, keys)
    name, sep, limit = spec.rpartition("=")
    if not sep or not name.strip():
        raise Invalid(f"{text!r} is not NAME=SIZE (e.g. sentry-web=400MB)")
    name = name.strip()
    if name.count(":") > 1 or name.startswith(":") or name.endswith(":"):
        raise Invalid(f"{name!r} is not a process name, group:process or group:*")
    return name, memory_limit(limit), overrides


def group_limit(text: str, keys: dict[str, Callable[[str], object]]
                ) -> tuple[str, int, Overrides]:
    name, limit, overrides = named_limit(text, keys)
    if ":" in name:
        raise Invalid(f"{name!r} is not a group name (no ':' allowed)")
    return name, limit, overrides


def any_limit(text: str, keys: dict[str, Callable[[str], object]]) -> tuple[int, Overrides]:
    limit, overrides = rule_spec(text, keys)
    return memory_limit(limit), overrides
