"""One watched process as every reader sees it: the metrics, `/status`, the status page and
`check --listener` all read a ProcessRow, built here from the policy's judgements.

Field names are the `/status` JSON keys where a key exists (memory_bytes, limit_bytes,
over_limit_samples), so the one number has one name from the policy to the user."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from listener.core.policy import Judgement, PolicyState, Verdict


@dataclass(frozen=True)
class ProcessRow:
    """A watched process as the last tick saw it, with the counters of what the listener did
    about it since it was first watched (the daemon's Stats add those; a tick leaves them 0)."""

    group: str
    process: str
    memory_bytes: int | None  # the figure the limit is compared with; None: no sample this tick
    measure: str  # rss, pss or uss: the measure actually used
    limit_bytes: int
    over_limit_samples: int  # consecutive samples over the limit
    children: int | None  # descendants counted (children sum/each/auto)
    pid: int = 0  # the supervised pid; 0: not running
    verdict: str = ""
    strategy: str = ""  # e.g. "pss, each, HUP"
    budget_left: int | None = None  # restarts left in the window; None: no budget
    # whose figure memory_bytes is: the supervised pid, or the largest worker with children
    # each/auto; None for a tree's sum
    memory_pid: int | None = None
    # seconds since the PSS/USS in memory_bytes was read: a figure no verdict depends on is
    # read at a slower pace (RSS: always 0); None: no sample
    memory_age_seconds: float | None = None
    tree_memory_bytes: int | None = None  # the supervised pid and its descendants, summed
    cpu_seconds: float | None = None  # CPU used, never decreasing while the pid is the same
    state: str = ""  # supervisord's state name: RUNNING, STOPPED...
    # counters, named as listener.web.stats.Counter's values and the metrics' stems
    restarts: int = 0
    restart_failures: int = 0
    restarts_suppressed: int = 0
    child_signals: int = 0
    child_signal_escalations: int = 0
    dry_run_actions: int = 0
    oom_kills: int = 0  # the process or a worker of its tree killed by the kernel's OOM killer
    forced_stops: int = 0
    last_action: str = ""  # the counter of the last action: restarts, child_signals, ...
    last_action_at: float = 0.0  # epoch seconds
    # (epoch seconds, bytes), the latest last; only in a snapshot taken with history
    history: tuple[tuple[float, int], ...] = ()

    @property
    def namespec(self) -> str:
        return f"{self.group}:{self.process}"

    @property
    def worker_pid(self) -> int | None:
        """The pid whose figure memory_bytes is, when that is not the supervised process."""
        return self.memory_pid if self.memory_pid not in (None, self.pid) else None


def _memory_pid(j: Judgement) -> int | None:
    """Whose figure the sample is: the largest unit's, the supervised pid's, none for a sum."""
    if j.sample is None:
        return None
    if j.sample.units:
        return max(j.sample.units, key=lambda u: u.bytes).pid
    return None if j.sample.children else j.process.pid


def watched_rows(judgements: Iterable[Judgement],
                 state: PolicyState | None = None) -> list[ProcessRow]:
    """The processes this listener watches (a limit applies; never itself), as rows: a
    process with no limit belongs to another listener's dashboards, if any."""
    history = state.history if state else {}
    rows = []
    for j in judgements:
        if j.verdict in (Verdict.SELF, Verdict.LISTENER) or j.strategy is None or j.rule is None:
            continue
        strategy, sample = j.strategy, j.sample
        used = len(history.get(j.process.namespec, ()))
        rows.append(ProcessRow(
            j.process.group, j.process.name,
            memory_bytes=sample.value if sample else None,
            measure=sample.measure if sample else strategy.measure,
            limit_bytes=j.rule.limit, over_limit_samples=j.over_samples,
            children=sample.children if sample else None, pid=j.process.pid,
            verdict=str(j.verdict), strategy=strategy.description,
            budget_left=max(0, strategy.max_restarts - used) if strategy.max_restarts else None,
            memory_pid=_memory_pid(j),
            memory_age_seconds=sample.age if sample else None,
            tree_memory_bytes=sample.tree if sample else None,
            cpu_seconds=sample.cpu if sample else None,
            state=j.process.statename))
    return rows
