"""The listener's view: what `/status` serves as JSON, what the status page shows, and what
`check --listener` reads back from another listener.

The JSON keys are a contract (README "Status page and /status"): the TypedDicts below declare
them and their types once; `to_json` is checked against them by mypy, `from_json` at run time,
since the answer of another host is hostile until checked."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any, TypedDict

from listener import __version__
from listener.core.rows import ProcessRow
from listener.core.trend import time_to_limit
from listener.web.stats import Snapshot


@dataclass(frozen=True)
class StatusView:
    version: str
    supervisor_up: bool
    last_tick: float  # epoch seconds; 0: never
    stopped_not_running: int
    processes: tuple[ProcessRow, ...]
    host_oom_kills: int = 0  # OOM kills of processes not watched (or not attributed)
    oom_source: str = ""  # where the listener sees OOM kills: kmsg, vmstat, none
    tick_problem: str = ""  # no TICK arrives: why; "": they do
    supervisor_url: str = ""  # where supervisord is asked, without credentials; "": not yet
    supervisor_error: str = ""  # why it could not be reached last time; "": it could

    @classmethod
    def of(cls, snap: Snapshot) -> StatusView:
        return cls(__version__, bool(snap.supervisor_up), snap.last_tick,
                   snap.stopped_not_running, snap.processes, snap.host_oom_kills,
                   snap.oom_source, snap.tick_problem, snap.supervisor_url,
                   snap.supervisor_error)


class LastActionJSON(TypedDict):
    kind: str  # the counter: restarts, child_signals, ...
    at: float


class _ProcessJSON(TypedDict):
    group: str
    process: str
    pid: int
    memory_bytes: int | None
    limit_bytes: int
    measure: str
    verdict: str
    strategy: str
    over_limit_samples: int
    children: int | None
    restarts: int
    restart_failures: int
    child_signals: int
    child_signal_escalations: int
    restarts_suppressed: int
    dry_run_actions: int
    budget_left: int | None
    last_action: LastActionJSON | None
    history: list[tuple[float, int]]


class ProcessJSON(_ProcessJSON, total=False):
    # added after the first listeners shipped: an older one does not send them
    state: str
    memory_pid: int | None
    memory_age_seconds: float | None
    # at the pace since its last fall, seconds until the figure reaches its limit (trend.py)
    time_to_limit_seconds: float | None
    oom_kills: int
    forced_stops: int


class _StatusJSON(TypedDict):
    version: str
    supervisor_up: bool
    last_tick: float
    stopped_not_running: int
    processes: list[ProcessJSON]


class StatusJSON(_StatusJSON, total=False):
    host_oom_kills: int
    oom_source: str
    tick_problem: str  # added later: an older listener does not send it
    supervisor_url: str
    supervisor_error: str


def to_json(view: StatusView) -> StatusJSON:
    return {"version": view.version, "supervisor_up": view.supervisor_up,
            "last_tick": view.last_tick, "stopped_not_running": view.stopped_not_running,
            "host_oom_kills": view.host_oom_kills, "oom_source": view.oom_source,
            "tick_problem": view.tick_problem, "supervisor_url": view.supervisor_url,
            "supervisor_error": view.supervisor_error,
            # last: status.render_json streams the processes after the rest
            "processes": [process_json(p) for p in view.processes]}


def process_json(p: ProcessRow) -> ProcessJSON:
    return {
        "group": p.group, "process": p.process, "pid": p.pid, "state": p.state,
        "memory_bytes": p.memory_bytes, "memory_pid": p.memory_pid,
        "memory_age_seconds": p.memory_age_seconds,
        "time_to_limit_seconds": time_to_limit(p.history, p.limit_bytes),
        "limit_bytes": p.limit_bytes, "measure": p.measure, "verdict": p.verdict,
        "strategy": p.strategy, "over_limit_samples": p.over_limit_samples,
        "children": p.children, "restarts": p.restarts, "restart_failures": p.restart_failures,
        "child_signals": p.child_signals, "child_signal_escalations": p.child_signal_escalations,
        "restarts_suppressed": p.restarts_suppressed, "dry_run_actions": p.dry_run_actions,
        "forced_stops": p.forced_stops,
        "budget_left": p.budget_left, "oom_kills": p.oom_kills,
        "last_action": {"kind": p.last_action, "at": p.last_action_at} if p.last_action else None,
        "history": list(p.history),
    }


class StatusError(ValueError):
    """A /status answer that is not what a listener serves: says where, in one line."""


def from_json(data: object) -> StatusView:
    """A decoded /status answer, every key and type checked, as the view it was made from."""
    checked: StatusJSON = _checked(data, StatusJSON, "")
    return StatusView(checked["version"], checked["supervisor_up"], checked["last_tick"],
                      checked["stopped_not_running"],
                      tuple(_process_row(p) for p in checked["processes"]),
                      checked.get("host_oom_kills", 0), checked.get("oom_source", ""),
                      checked.get("tick_problem", ""), checked.get("supervisor_url", ""),
                      checked.get("supervisor_error", ""))


def _process_row(p: ProcessJSON) -> ProcessRow:
    action = p["last_action"]
    return ProcessRow(
        p["group"], p["process"], memory_bytes=p["memory_bytes"], measure=p["measure"],
        limit_bytes=p["limit_bytes"], over_limit_samples=p["over_limit_samples"],
        children=p["children"], pid=p["pid"], verdict=p["verdict"], strategy=p["strategy"],
        budget_left=p["budget_left"], memory_pid=p.get("memory_pid"), state=p.get("state", ""),
        memory_age_seconds=p.get("memory_age_seconds"),
        restarts=p["restarts"], restart_failures=p["restart_failures"],
        restarts_suppressed=p["restarts_suppressed"], child_signals=p["child_signals"],
        child_signal_escalations=p["child_signal_escalations"],
        dry_run_actions=p["dry_run_actions"], oom_kills=p.get("oom_kills", 0),
        forced_stops=p.get("forced_stops", 0),
        last_action=action["kind"] if action else "",
        last_action_at=action["at"] if action else 0.0,
        history=tuple((t, b) for t, b in p["history"]))


_COUNT_MAX = 2**63 - 1  # pids, bytes and counts: none is negative, none beyond an int64
_SCALARS = {int: "a whole number from 0", float: "a finite number", str: "a string",
            bool: "true or false"}


def _checked(value: object, kind: Any, where: str, nullable: bool = False) -> Any:
    """`value` if it is of the declared `kind` (a TypedDict, list, tuple, union with None, or
    bool/int/float/str), with floats made float; else a StatusError naming `where`."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (kind,) = (a for a in args if a is not type(None))
        return _checked(value, kind, where, nullable=True)
    if typing.is_typeddict(kind):
        if not isinstance(value, dict):
            raise _wrong(value, "an object", where, nullable)
        hints = typing.get_type_hints(kind)
        missing = kind.__required_keys__ - value.keys()
        if missing:
            raise StatusError(f"{where or 'the answer'}: no {sorted(missing)[0]!r}")
        # keys a newer listener adds are left out, not refused
        return {k: _checked(value[k], hints[k], f"{where}.{k}" if where else k)
                for k in hints if k in value}
    if origin in (list, tuple):
        if not isinstance(value, list) or (origin is tuple and len(value) != len(args)):
            what = f"a list of {len(args)}" if origin is tuple else "a list"
            raise _wrong(value, what, where, nullable)
        kinds = args if origin is tuple else args * len(value)
        pairs = enumerate(zip(value, kinds, strict=True))
        return [_checked(v, k, f"{where}[{i}]") for i, (v, k) in pairs]
    return _checked_scalar(value, kind, where, nullable)


def _checked_scalar(value: object, kind: type, where: str, nullable: bool) -> object:
    if kind in (str, bool) and isinstance(value, kind):
        return value
    if not isinstance(value, bool):  # JSON's true is no number, though Python's True is an int
        if kind is int and isinstance(value, int) and 0 <= value <= _COUNT_MAX:
            return value
        if kind is float and isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    raise _wrong(value, _SCALARS[kind], where, nullable)


def _wrong(value: object, what: str, where: str, nullable: bool) -> StatusError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    null = " or null" if nullable else ""
    return StatusError(f"{where or 'the answer'}: expected {what}{null}, got {shown}")
