"""Text people write and read: sizes, durations, ages, pids, one-line messages, URLs shown
without credentials. The one way each is written for people (the status page, `check` and the
logs all use these); pure functions."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from fractions import Fraction

# memmon's KB/MB/GB are powers of 1024 (supervisor's byte_size); we keep that meaning and
# add the unambiguous IEC spellings and the one-letter forms.
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$", re.ASCII)
_MAX_BYTES = 1024**6  # a petabyte-scale ceiling keeps absurd input from becoming a float overflow


def parse_size(text: str) -> int:
    """'400MB', '1.5GiB', '512k', '1048576' -> bytes. Raises ValueError with the reason."""
    if text.strip().startswith("-"):
        raise ValueError(f"a size cannot be negative: {text!r}")
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (expected a number with an optional unit like 400MB)")
    number, unit = match.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} in {text!r} (use B, KB, MB, GB, TB or KiB..TiB)")
    value = Fraction(number) * factor  # exact: no float rounding of large byte counts
    if value > _MAX_BYTES:
        raise ValueError(f"size too large: {text!r}")
    return int(value)


def parse_duration(text: str) -> float:
    """'90', '30s', '10m', '1.5h', '2d' -> seconds. Raises ValueError with the reason."""
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (expected seconds or a number with s/m/h/d)")
    number, unit = match.groups()
    factor = _DURATION_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown duration unit {unit!r} in {text!r} (use s, m, h or d)")
    value = float(number) * factor
    if value > 100 * 365 * 86400:
        raise ValueError(f"duration too long: {text!r}")
    return value


def format_size(n_bytes: float) -> str:
    """Human-readable size with IEC units, e.g. 419430400 -> '400.0MiB'."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


# An age is written in the largest unit that still reads as at least 2 of it ("90s", not "2m",
# for a tick 90 s ago), in the units --grace and the other durations take.
_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def format_age(seconds: float | None) -> str:
    """How long ago: 5 -> '5s ago', 600 -> '10m ago', 7200 -> '2h ago'; None -> 'never'.
    Whole units, rounded down; a time in the future (another host's clock) is '0s ago'."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    for unit, size in _UNITS:
        if seconds >= 2 * size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


# a process's last action, said in the past tense: its counter (listener.web.stats.Counter's
# values, the /status `last_action.kind`) -> what happened
_DONE = {"restarts": "restarted", "child_signals": "worker signalled",
         "child_signal_escalations": "escalated to a restart", "dry_run_actions": "dry run: would act",
         "oom_kills": "OOM-killed"}


def format_action(kind: str, seconds: float) -> str:
    """A last action and how long ago: ('restarts', 9) -> 'restarted 9s ago'."""
    return f"{_DONE.get(kind, kind.replace('_', ' '))} {format_age(seconds)}"


def format_soon(seconds: float) -> str:
    """A time ahead, rounded down to its largest whole unit: 2500 -> 'in ~41m'."""
    for unit, size in _UNITS:
        if seconds >= size:
            return f"in ~{int(seconds // size)}{unit}"
    return f"in ~{int(seconds)}s"


def format_pid(pid: int | None) -> str:
    """A pid as a table cell: '-' for none (0 is what supervisord lists for a stopped process)."""
    return str(pid) if pid else "-"


def format_memory(n_bytes: int | None, measure: str, whose: int | None = None,
                  notes: Sequence[str] = (), age: float | None = None) -> str:
    """A figure and its measure, '210.0MiB pss'; then, in parentheses, the pid it belongs to
    when that is not the supervised process, how old the figure is when it was not read this
    tick, and any notes: '210.0MiB pss (pid 4312, read 40s ago, largest of 5)'; '-' without a
    sample."""
    if n_bytes is None:
        return "-"
    old = [f"read {format_age(age)}"] if age is not None and age >= 1 else []
    said = ", ".join([f"pid {whose}", *old, *notes] if whose else [*old, *notes])
    return f"{format_size(n_bytes)} {measure}" + (f" ({said})" if said else "")


def format_duration(seconds: float) -> str:
    """A duration as people write it, in the largest unit that divides it: 3600 -> '1h',
    90 -> '90s', 0.5 -> '0.5s'."""
    for unit, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def one_line(text: str) -> str:
    """Control characters escaped, so that an error about hostile input stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def quoted(text: object, limit: int = 200) -> str:
    """Another party's words (a server's error, a name it sent) on one line and at most about
    `limit` characters, so that a hostile answer cannot flood a terminal or a log line."""
    said = one_line(str(text))
    return said if len(said) <= limit else f"{said[:limit]}... ({len(said)} characters)"


def redact_url(url: str) -> str:
    """The URL without any user:password@ part, for logs and errors."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None and parsed.username is None:
        return url
    netloc = parsed.hostname or ""
    if parsed.port:
        netloc += f":{parsed.port}"
    return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
