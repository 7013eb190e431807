"""Value objects shared by the sampler, the policy and the shells around them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from listener.core.servers import Server
from listener.core.text import format_size

# kernel start times this close are the same process (both read from /proc, in clock ticks)
SAME_START = 0.05

# Why a pid's memory could not be read (memwatch_sample_errors_total{reason}).
VANISHED = "vanished"  # exited between the listing and the read
ZOMBIE = "zombie"  # exited, not yet reaped: it holds no memory to judge
ACCESS_DENIED = "access_denied"
PID_REUSED = "pid_reused"  # the pid is another, newer process than the one listed
UNREADABLE = "unreadable"  # any other failed read (e.g. out of descriptors)
SAMPLE_ERRORS = (VANISHED, ZOMBIE, ACCESS_DENIED, PID_REUSED, UNREADABLE, "pss_denied", "uss_denied")


@dataclass(frozen=True)
class ProcessInfo:
    """One entry of supervisord's process list."""

    group: str
    name: str
    pid: int
    statename: str
    start: float  # epoch seconds when supervisord last started it
    stop: float = 0.0  # epoch seconds when it last stopped (0: never)
    # CLOCK_BOOTTIME seconds when supervisord said so: a process holding `pid` that started
    # later is not this one (the pid was reused). inf: not known, nothing to compare.
    listed_at: float = math.inf
    exitstatus: int = 0  # of its last exit; -1: ended by a signal (supervisord's word)

    @property
    def namespec(self) -> str:
        return f"{self.group}:{self.name}"


@dataclass(frozen=True)
class Unit:
    """A pid judged on its own: the supervised process, or (with --children each) a descendant."""

    pid: int
    bytes: int
    started: float  # epoch seconds, from the kernel


@dataclass(frozen=True)
class Sample:
    """The memory of one supervised process as the configured mode sees it.

    `value` is the figure the limit is compared with: the pid alone (none), the tree's sum
    (sum) or the largest unit (each). `units` holds the supervised pid first, then its
    descendants (each mode only)."""

    value: int
    measure: str  # the measure actually used: "rss" where PSS/USS was denied
    children: int
    units: tuple[Unit, ...]
    server: Server = Server.PLAIN  # what the process runs, from its command line
    tree: int | None = None  # the figures of the supervised pid and its descendants, summed
    cpu: float | None = None  # CPU seconds of the process (its tree, with children modes)
    # seconds since the PSS/USS in `value` was read (0: this tick; RSS is read every tick):
    # a figure no verdict depends on is read at a slower pace (listener.host.figures)
    age: float = 0.0
    # every pid measured, the supervised one first, whatever the mode: who an OOM kill was
    members: tuple[Unit, ...] = ()


@dataclass(frozen=True)
class Target:
    """The process an action is about, and the figure that made the policy act."""

    group: str
    name: str
    pid: int  # the supervised pid
    memory: int
    limit: int
    measure: str
    rule: str  # which rule applied, e.g. "group sentry-worker"
    by: int = 0  # the child whose figure `memory` is; 0: the supervised process's own

    @property
    def namespec(self) -> str:
        return f"{self.group}:{self.name}"

    def fields(self) -> dict[str, object]:
        """For a log line: process=web:web pid=42 [child_pid=43] rss=420.0MiB limit=400.0MiB
        rule=any; the figure is the child's when a child triggered the action."""
        child = {"child_pid": self.by} if self.by else {}
        return {"process": self.namespec, "pid": self.pid, **child,
                self.measure: format_size(self.memory), "limit": format_size(self.limit),
                "rule": self.rule}


@dataclass(frozen=True)
class Restart:
    """Stop and start a supervised process (through supervisord)."""

    target: Target
    uptime: float  # seconds the process had been up
    escalates: int | None = None  # the pid of a signalled child that outlived its timeout


@dataclass(frozen=True)
class SignalChild:
    """Send `signal` to one descendant of a supervised process (with --children each), or, for
    a server that replaces its workers itself (Granian), to the supervised master on behalf of
    that descendant."""

    target: Target
    child_pid: int
    child_started: float  # the child's kernel start time: checked again before the signal
    signal: int
    to_master: bool = False  # the signal goes to the child's parent, its master
    # when set: send the first of these the child catches (its signal mask is read just before);
    # if it catches none, `otherwise` is done instead
    if_caught: tuple[int, ...] = ()
    otherwise: Restart | None = None


Action = Restart | SignalChild



def own_namespecs(environ: Mapping[str, str]) -> frozenset[str]:
    """The listener's own `group:name`, from what supervisord sets in every child's environment:
    the listener is listed by getAllProcessInfo too, and must never be its own target."""
    name = environ.get("SUPERVISOR_PROCESS_NAME")
    if not name:
        return frozenset()
    group = environ.get("SUPERVISOR_GROUP_NAME") or name
    return frozenset({f"{group}:{name}"})
