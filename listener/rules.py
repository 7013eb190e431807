"""What the listener judges a process by: a limit and a strategy, found by the most specific rule.

A rule's target is a process (`group:name` or `name`), every process of a group (`group:*`,
or a group name), or any process. The policy receives `Rules` and nothing else of the
configuration (no connection settings, no password)."""

from __future__ import annotations

import fnmatch
import signal
from dataclasses import dataclass, field
from functools import cached_property

from listener.units import format_size

CHILDREN_MODES = ("none", "sum", "each")
MEASURES = ("rss", "pss", "uss")


@dataclass(frozen=True)
class Strategy:
    """How a process is measured and acted on."""

    measure: str = "rss"
    children: str = "none"  # none: the supervised pid; sum: its tree; each: every pid alone
    child_signal: int | None = None  # with `each`: signal the child instead of a restart
    # a signalled child still alive this long after is escalated to a program restart: longer
    # than uWSGI's worker-reload-mercy (60 s) and gunicorn's graceful_timeout (30 s) by default
    child_signal_timeout: float = 90.0
    consecutive: int = 1  # samples over the limit in a row before acting
    grace: float = 0.0  # seconds after start during which nothing is done
    max_restarts: int = 0  # per restart_window; 0: no budget (memmon's behaviour)
    restart_window: float = 3600.0
    max_parallel: int = 1  # processes of one group restarting at once


    @cached_property
    def description(self) -> str:
        """For people: "pss, each, HUP" (the measure, the children mode, the child signal);
        worked out once per strategy, not once per process and tick."""
        parts = [self.measure]
        if self.children != "none":
            parts.append(self.children)
        if self.child_signal is not None:
            parts.append(signal.Signals(self.child_signal).name.removeprefix("SIG"))
        return ", ".join(parts)


@dataclass(frozen=True)
class Rule:
    target: str  # e.g. "group sentry-worker": said in logs and `check`
    limit: int
    strategy: Strategy


@dataclass(frozen=True)
class Rules:
    """Limits by specificity: process (`group:name`, then `name`), `group:*`, group, any."""

    programs: tuple[tuple[str, int], ...] = ()
    groups: tuple[tuple[str, int], ...] = ()
    any: int | None = None
    strategy: Strategy = field(default_factory=Strategy)
    exclude: tuple[str, ...] = ()  # globs on group:name never to touch

    @cached_property
    def _programs(self) -> dict[str, Rule]:
        return {key: Rule(f"program {key}", size, self.strategy) for key, size in self.programs}

    @cached_property
    def _groups(self) -> dict[str, Rule]:
        return {key: Rule(f"group {key}", size, self.strategy) for key, size in self.groups}

    @cached_property
    def _any(self) -> Rule | None:
        return None if self.any is None else Rule("any", self.any, self.strategy)

    def rule_for(self, group: str, name: str) -> Rule | None:
        """The most specific rule that applies to the process, if any."""
        programs = self._programs
        for key in (f"{group}:{name}", name, f"{group}:*"):
            if key in programs:
                return programs[key]
        return self._groups.get(group, self._any)

    def excluded(self, group: str, name: str) -> bool:
        namespec = f"{group}:{name}"
        return any(fnmatch.fnmatchcase(namespec, p) for p in self.exclude)

    def describe(self) -> str:
        """One line for the log: `program web=400.0MiB, group w=1.0GiB, any=2.0GiB`."""
        parts = [f"program {n}={format_size(s)}" for n, s in self.programs]
        parts += [f"group {n}={format_size(s)}" for n, s in self.groups]
        if self.any is not None:
            parts.append(f"any={format_size(self.any)}")
        return ", ".join(parts) or "none"
