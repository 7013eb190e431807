"""What the listener judges a process by: a limit and a strategy, found by the most specific rule.

A rule's target is a process (`group:name` or `name`), every process of a group (`group:*`,
or a group name), or any process. Each rule carries its own strategy (how the process is
measured and acted on); a rule that says nothing of a setting inherits the listener's default.
The policy receives `Rules` and nothing else of the configuration (no connection settings, no
password)."""

from __future__ import annotations

import dataclasses
import fnmatch
import signal
from dataclasses import dataclass, field
from functools import cached_property

from listener.core.servers import Server
from listener.core.text import format_size

CHILDREN_MODES = ("none", "sum", "each", "auto")
MEASURES = ("rss", "pss", "uss")

# What `children = auto` does with each recognised server: judge every worker on its own and
# use the server's own graceful replacement of one worker, where it has one.
#   uWSGI: SIGHUP to a worker makes it finish its request and exit; the master forks a new one.
#   gunicorn: SIGTERM to a worker is its graceful exit (graceful_timeout); the arbiter respawns.
#   Celery prefork: no signal lets a pool child finish its task (its children reset TERM, HUP,
#   USR1 to "die now"; README "Celery's pool children and signals" says what each does), so a
#   child over its limit restarts the master: supervisord's SIGTERM is Celery's warm shutdown.
#   Granian: a worker ignores SIGHUP, and SIGTERM to a worker shuts the whole server down unless
#   its master respawns failed workers (which /proc cannot tell); SIGHUP to the master replaces
#   every worker, one at a time, new before old: graceful whatever the respawn setting.
#   taskworker: the child gets the first of TERM and INT that it catches, read from its signal
#   mask just before the signal (IF_CAUGHT). taskbroker-client 0.20's children catch TERM: they
#   finish their task, report it and exit, and the parent starts another (nothing lost).
#   26.5's catch only INT (KeyboardInterrupt): the child's task is cut and re-run by the broker
#   after its deadline, one task instead of every child's with a program restart; TERM would kill
#   it at once and an idle one could leave the task queue's lock held for good. A child that
#   catches neither is not signalled: its program is restarted.
#   multiprocessing pools: no signal lets a pool worker finish its task (a cut task's caller
#   waits forever), so a child over its limit restarts the parent, like Celery.
#   docs/findings/granian-and-taskworker.md has the measurements behind each line.
AUTO: dict[Server, tuple[str, int | None]] = {
    Server.UWSGI: ("each", int(signal.SIGHUP)),
    Server.GUNICORN: ("each", int(signal.SIGTERM)),
    Server.CELERY: ("each", None),
    Server.GRANIAN: ("each", int(signal.SIGHUP)),
    Server.TASKWORKER: ("each", int(signal.SIGTERM)),
    Server.POOL: ("each", None),
}
# servers whose children get the first of these signals they catch, as their signal masks say
IF_CAUGHT: dict[Server, tuple[int, ...]] = {
    Server.TASKWORKER: (int(signal.SIGTERM), int(signal.SIGINT)),
}
# servers whose own child signal goes to the master, which then replaces its workers one by one
MASTER_SIGNALLED = frozenset({Server.GRANIAN})
# seconds per worker a master's rolling replacement takes (Granian's respawn_interval is 3.5 s):
# a worker replaced late in the roll is not overdue
ROLLING_SECONDS_PER_WORKER = 5.0


@dataclass(frozen=True)
class Strategy:
    """How a process is measured and acted on."""

    measure: str = "rss"
    # none: the supervised pid; sum: its tree; each: every pid alone; auto: by the server found
    children: str = "none"
    child_signal: int | None = None  # with `each`: signal the child instead of a restart
    # a signalled child still alive this long after is escalated to a program restart: longer
    # than gunicorn's graceful_timeout (30 s) and the guide's uWSGI harakiri (60 s), the only
    # bound on a uWSGI worker sent SIGHUP (worker-reload-mercy bounds the master's reloads)
    child_signal_timeout: float = 90.0
    consecutive: int = 1  # samples over the limit in a row before acting
    grace: float = 0.0  # seconds after start during which nothing is done
    max_restarts: int = 0  # per restart_window; 0: no budget (memmon's behaviour)
    restart_window: float = 3600.0
    max_parallel: int = 1  # processes of one group restarting at once
    # the lower limit that applies while the host is under memory pressure; None: none
    pressure_limit: int | None = None
    # written to /proc/PID/oom_score_adj of the process and of each worker, once per process
    # start, so that the kernel's OOM killer picks a replaceable one; None: left as it is
    oom_score_adj: int | None = None

    def resolve(self, server: Server) -> Strategy:
        """The concrete strategy for a process run by `server` (only `auto` depends on it).
        An explicit child signal wins over the server's own."""
        return self if self.children != "auto" else self._by_server[server]

    @cached_property
    def _by_server(self) -> dict[Server, Strategy]:
        """What `auto` is for each server: resolved on every tick, built once per strategy."""
        base = {f.name: getattr(self, f.name) for f in dataclasses.fields(Strategy)}
        resolved: dict[Server, Strategy] = {}
        for server in Server:
            children, child_signal = AUTO.get(server, ("none", None))
            if children == "each" and self.child_signal is not None:
                child_signal = self.child_signal
            resolved[server] = AutoStrategy(**{**base, "children": children,
                                               "child_signal": child_signal}, server=server)
        return resolved

    def settings_beyond(self, default: Strategy) -> str:
        """The settings where this strategy differs from `default`, as the rule would write
        them: "children=auto, grace=300s"."""
        said = []
        for f in dataclasses.fields(Strategy):
            mine = getattr(self, f.name)
            if mine == getattr(default, f.name):
                continue
            if f.name == "child_signal" and mine is not None:
                mine = signal.Signals(mine).name.removeprefix("SIG")
            elif f.name == "pressure_limit" and mine is not None:
                mine = format_size(mine)
            elif isinstance(mine, float):
                mine = f"{mine:g}s"
            said.append(f"{f.name.replace('_', '-')}={mine}")
        return ", ".join(said)

    @cached_property
    def description(self) -> str:
        """For people: "pss, each, HUP" (the measure, the children mode, the child signal);
        worked out once per strategy, not once per process and tick."""
        parts = [self.measure]
        if self.children != "none":
            parts.append(self.children)
        if self.child_signal is not None:
            said = " or ".join(signal.Signals(s).name.removeprefix("SIG")
                               for s in self.if_caught or (self.child_signal,))
            parts.append(f"{said} to master" if self.signals_master
                         else f"{said}, as caught" if self.if_caught else said)
        return ", ".join(parts)

    @property
    def signals_master(self) -> bool:
        """The child signal goes to the master, which replaces its workers one by one."""
        return False

    @property
    def if_caught(self) -> tuple[int, ...]:
        """The signals a child may get, in order: the first its signal mask says it catches;
        none of them if it catches none (its program is restarted). Empty: the child signal is
        sent as it is."""
        return ()


@dataclass(frozen=True)
class AutoStrategy(Strategy):
    """What `auto` became for one server: described as "pss, each, HUP (auto: uwsgi)"."""

    server: Server = Server.PLAIN

    @cached_property
    def description(self) -> str:
        return f"{super().description} (auto: {self.server.value})"

    @property
    def signals_master(self) -> bool:
        # the master's own signal; an explicit other one (TERM, for a Granian that respawns
        # failed workers) goes to the worker, as the rule says
        return self.server in MASTER_SIGNALLED and self.child_signal == AUTO[self.server][1]

    @property
    def if_caught(self) -> tuple[int, ...]:
        # the server's own choice; an explicit child signal is sent as the rule says
        if self.child_signal != AUTO.get(self.server, ("", None))[1]:
            return ()
        return IF_CAUGHT.get(self.server, ())


@dataclass(frozen=True)
class Rule:
    target: str  # e.g. "group sentry-worker": said in logs and `check`
    limit: int
    strategy: Strategy


# A limit on the command line or in the file: (name, size), or (name, size, own strategy).
Entry = tuple[str, int] | tuple[str, int, Strategy]


@dataclass(frozen=True)
class Rules:
    """Limits by specificity: process (`group:name`, then `name`), `group:*`, group, any.
    `strategy` is the default of every rule that brings none of its own."""

    programs: tuple[Entry, ...] = ()
    groups: tuple[Entry, ...] = ()
    any: int | None = None
    strategy: Strategy = field(default_factory=Strategy)
    exclude: tuple[str, ...] = ()  # globs on group:name never to touch
    any_strategy: Strategy | None = None  # the [any] rule's own, if it has one

    @classmethod
    def uniform(cls, measure: str = "rss", children: str = "none") -> Rules:
        """No limit; every process measured the same way (advise, benchmarks)."""
        return cls(strategy=Strategy(measure=measure, children=children))

    def _rule(self, kind: str, entry: Entry) -> tuple[str, Rule]:
        strategy = entry[2] if len(entry) == 3 else self.strategy
        return entry[0], Rule(f"{kind} {entry[0]}", entry[1], strategy)

    @cached_property
    def _programs(self) -> dict[str, Rule]:
        return dict(self._rule("program", e) for e in self.programs)

    @cached_property
    def _groups(self) -> dict[str, Rule]:
        return dict(self._rule("group", e) for e in self.groups)

    @cached_property
    def _any(self) -> Rule | None:
        if self.any is None:
            return None
        return Rule("any", self.any, self.any_strategy or self.strategy)

    @property
    def has_limits(self) -> bool:
        return bool(self.programs or self.groups) or self.any is not None

    def rule_for(self, group: str, name: str) -> Rule | None:
        """The most specific rule that applies to the process, if any."""
        programs = self._programs
        for key in (f"{group}:{name}", name, f"{group}:*"):
            if key in programs:
                return programs[key]
        return self._groups.get(group, self._any)

    def strategy_for(self, group: str, name: str) -> Strategy:
        """The strategy a process is measured by: its rule's, else the default."""
        rule = self.rule_for(group, name)
        return rule.strategy if rule else self.strategy

    @cached_property
    def strategies(self) -> frozenset[Strategy]:
        rules = [*self._programs.values(), *self._groups.values(), self._any]
        return frozenset({self.strategy, *(r.strategy for r in rules if r)})

    def excluded(self, group: str, name: str) -> bool:
        namespec = f"{group}:{name}"
        return any(fnmatch.fnmatchcase(namespec, p) for p in self.exclude)

    def describe(self, width: int = 400) -> str:
        """One line for the log: `program web=400.0MiB (children=auto), group w=1.0GiB,
        any=2.0GiB`; a rule's own settings are named where they are not the default. At most
        about `width` characters: the rules beyond are counted (`... and 480 more rules`)."""
        rules = [*self._programs.values(), *self._groups.values()]
        if self._any is not None:
            rules.append(self._any)
        parts: list[str] = []
        used = 0
        for rule in rules:
            own = rule.strategy.settings_beyond(self.strategy)
            own = f" ({own})" if own else ""
            part = f"{rule.target}={format_size(rule.limit)}{own}"
            if used + len(part) > width and parts:
                return ", ".join(parts) + f" ... and {len(rules) - len(parts)} more rules"
            parts.append(part[:width])
            used += len(part) + 2
        return ", ".join(parts) or "none"
