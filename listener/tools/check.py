"""`sentry-memwatch check`: one look, as a table, with an exit code for scripts."""

from __future__ import annotations

import http.client
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from typing import TextIO

from listener.config.settings import Config
from listener.core import policy
from listener.core.model import ProcessInfo, own_namespecs
from listener.core.policy import Verdict
from listener.core.servers import Server, recognise, short_stop_wait
from listener.core.text import (
    format_action,
    format_age,
    format_memory,
    format_pid,
    format_size,
    one_line,
    quoted,
    redact_url,
)
from listener.host.sampler import Sampler
from listener.tools.table import table
from listener.web import client
from listener.web.view import StatusView, from_json

HEADERS = ("GROUP", "PROCESS", "PID", "STATE", "STRATEGY", "MEMORY", "LIMIT", "VERDICT")


def verdict_text(j: policy.Judgement) -> str:
    if j.verdict in (Verdict.SELF, Verdict.LISTENER, Verdict.EXCLUDED, Verdict.STOPPED,
                     Verdict.NO_LIMIT, Verdict.NO_SAMPLE):
        return str(j.verdict)
    if j.over:
        extra = {Verdict.GRACE: " (grace)", Verdict.DRAINING: " (draining)"}.get(j.verdict, "")
        return "OVER" + extra
    return "ok"


def memory_text(j: policy.Judgement) -> str:
    """The figure the limit is compared with, and what it is: `210.0MiB pss (pid 4312, largest
    of 5)` names the worker whose figure it is; `600.0MiB rss (sum of 5)` says it is a tree's."""
    sample = j.sample
    if sample is None:
        return "-"
    notes, whose = [], None
    if sample.units:
        whose = max(sample.units, key=lambda u: u.bytes).pid
        notes.append(f"largest of {len(sample.units)}")
    elif sample.children:
        notes.append(f"sum of {sample.children + 1}")
    strategy = j.strategy
    if strategy is not None and strategy.measure != sample.measure:  # PSS/USS denied
        notes.append(f"not {strategy.measure}: denied")
    return format_memory(sample.value, sample.measure, whose, notes)


def render(judgements: Sequence[policy.Judgement]) -> str:
    rows = [HEADERS]
    for j in judgements:
        strategy = j.strategy.description if j.strategy and j.verdict is not Verdict.SELF else "-"
        rows.append((j.process.group, j.process.name, format_pid(j.process.pid),
                     j.process.statename, strategy, memory_text(j),
                     format_size(j.limit) if j.limit is not None else "-", verdict_text(j)))
    return table(rows)


def stop_wait_warnings(judgements: Sequence[policy.Judgement],
                       stop_waits: Mapping[str, float]) -> list[str]:
    """One line per program whose stopwaitsecs is shorter than its server's warm shutdown."""
    said: dict[str, str] = {}
    for j in judgements:
        wait = stop_waits.get(j.process.namespec)
        if j.sample is None or wait is None or j.process.group in said:
            continue
        problem = short_stop_wait(j.sample.server, wait)
        if problem:
            said[j.process.group] = f"warning: {j.process.group}: {problem}"
    return list(said.values())


def check(config: Config, processes: Sequence[ProcessInfo], sampler: Sampler, out: TextIO,
          environ: dict[str, str] | None = None,
          stop_waits: Mapping[str, float] | None = None) -> int:
    """Print the table (and what to fix in supervisord's configuration, given each program's
    stopwaitsecs); 1 if some watched process is over its limit, else 0."""
    result = sampler.sample(processes, config.rules)
    env = os.environ if environ is None else environ
    decision = policy.decide(processes, result.samples, config.rules, policy.PolicyState(),
                             time.time(), self_names=own_namespecs(env),
                             self_pids=frozenset({os.getpid()}))
    out.write(render(decision.judgements))
    for line in stop_wait_warnings(decision.judgements, stop_waits or {}):
        out.write(line + "\n")
    over = [j for j in decision.judgements if verdict_text(j).startswith("OVER")]
    return 1 if over else 0


MAX_CELL = 120  # characters of a name another listener sent; the rest is said as a count
LISTENER_HEADERS = ("GROUP", "PROCESS", "PID", "STRATEGY", "MEMORY", "LIMIT", "VERDICT",
                    "RESTARTS", "SIGNALS", "BUDGET", "LAST ACTION")


def listener_table(view: StatusView, now: float) -> tuple[str, int]:
    """A running listener's view as a table, and the exit code a probe reads: 2 when the
    listener cannot tell (no TICK arrives, supervisord out of its reach), 1 when some process
    is over its limit and nothing deals with it, else 0 (draining, restarting, counting...)."""
    rows: list[tuple[str, ...]] = [LISTENER_HEADERS]
    for p in view.processes:
        last = format_action(p.last_action, now - p.last_action_at) if p.last_action else "-"
        rows.append(tuple(quoted(cell, MAX_CELL) for cell in (
            p.group, p.process, format_pid(p.pid), p.strategy,
            format_memory(p.memory_bytes, p.measure, p.worker_pid, age=p.memory_age_seconds),
            format_size(p.limit_bytes),
            p.verdict, str(p.restarts), str(p.child_signals),
            "-" if p.budget_left is None else str(p.budget_left), last)))
    in_hand = {str(v) for v in policy.IN_HAND}
    over = any(p.memory_bytes is not None and p.memory_bytes > p.limit_bytes
               and p.verdict not in in_hand for p in view.processes)
    head = (f"supervisord {'reachable' if view.supervisor_up else 'UNREACHABLE'}, "
            f"last tick {format_age(now - view.last_tick if view.last_tick else None)}, "
            f"stopped and not running again: {view.stopped_not_running}\n")
    if view.tick_problem:
        head += f"cannot tell: {one_line(view.tick_problem)}\n"
    if view.supervisor_error and not view.supervisor_up:
        head += (f"cannot reach supervisord at {quoted(view.supervisor_url, MAX_CELL)}: "
                 f"{quoted(view.supervisor_error)}\n")
    code = 2 if view.tick_problem or not view.supervisor_up else 1 if over else 0
    return head + table(rows), code


STATUS_MAX_BYTES = 64 * 2**20  # /status of 1000 processes with their history is about 4 MB


def check_listener(url: str, out: TextIO, timeout: float = 10.0) -> int:
    """`check --listener URL`: the listener's own view, and listener_table's exit code (2 also
    when /status cannot be read: CheckError)."""
    status_url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/status") else "/status")
    shown = redact_url(status_url)
    try:
        answer = client.get(status_url, timeout, STATUS_MAX_BYTES, {"Accept": "application/json"})
        if answer.status != 200:
            raise client.Refused(f"HTTP {answer.status}")
        view = from_json(client.loads(answer.body))
    # StatusError is a ValueError; a garbled status line or a cut body is an HTTPException
    except (OSError, ValueError, client.Refused, http.client.HTTPException) as exc:
        raise CheckError(f"--listener: cannot read {one_line(shown)}: {client.why(exc)}") from None
    text, code = listener_table(view, time.time())
    out.write(text)
    return code


class CheckError(Exception):
    """One line for the user; exit code 2."""


def listener_arguments(commands: Sequence[tuple[str, str, str]]) -> tuple[str, list[str]]:
    """The arguments of the one sentry-memwatch listener supervisord runs, so that a bare
    `check` judges with the listener's own rules: (its namespec, its arguments)."""
    found = []
    for namespec, command, directory in commands:
        try:
            argv = shlex.split(command)
        except ValueError:
            continue
        if recognise(argv) is Server.MEMWATCH:
            found.append((namespec, _absolute_config(argv[_first_argument(argv):], directory)))
    if not found:
        raise CheckError("no limits given, and supervisord runs no sentry-memwatch listener to "
                         "take them from: give --config FILE or limits (-p, -g, -a)")
    if len(found) > 1:
        names = ", ".join(n for n, _ in found)
        raise CheckError(f"no limits given, and supervisord runs several sentry-memwatch "
                         f"listeners ({names}): give --config FILE or limits (-p, -g, -a)")
    return found[0]


def _first_argument(argv: list[str]) -> int:
    """Where the listener's own arguments start: after the script, or after `-m listener`."""
    for i, arg in enumerate(argv):
        if arg == "listener" and i and argv[i - 1] == "-m":
            return i + 1
        if os.path.basename(arg) == "sentry-memwatch":
            return i + 1
    return len(argv)


def _absolute_config(args: list[str], directory: str) -> list[str]:
    """A relative --config is relative to the listener's directory (supervisord's `directory=`)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            out[i + 1] = os.path.join(directory or "/", out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + os.path.join(directory or "/", arg.split("=", 1)[1])
    return out
