"""`advise --prometheus URL`: the observations listener.tools.advice works on, read from the series the
listener exported to Prometheus over a window, instead of sampled live.

Only the standard library speaks to Prometheus's HTTP API (GET /api/v1/query and
/api/v1/query_range). Every query is evaluated at one instant, Prometheus's own time(), so that
the clock of the host running `advise` does not matter and all figures describe the same moment.

Per supervisord group (a program), the fields of Observed are:

- processes, children_per_process, limit, measure: as they are now. A group is reported if it
  has a memwatch_process_tree_memory_bytes series now; a program that ran earlier in the window
  but no longer does is left out (there is nothing to advise for it). processes counts its
  processes; children_per_process is the mean of memwatch_process_children over them (always 0
  under a rule with children = none: the listener does not look at the tree then); limit is the
  largest memwatch_process_memory_limit_bytes; measure is the `measure` label that most of them
  have on memwatch_process_memory_bytes;
- process_memory: memwatch_process_tree_memory_bytes of every process the group had in the
  window, pooled, in that measure only: samples taken in another measure (before a reload changed
  it, say) are left out, because RSS and PSS do not mix. A range query fetches at most MAX_POINTS
  points per series, and each point is max_over_time over its step. When the step is no longer
  than the scrape interval, each stored sample is counted exactly once. When the step is longer,
  no peak is stepped over: max stays exact, and p50 and p99 lean high (the safe side for a limit)
  by at most the spread of memory within one step;
- worker_memory: memwatch_process_memory_bytes at the points where it is below the tree's
  memory, which means the rule judged each process of the tree on its own (with children none
  or sum the two figures are equal). This is the LARGEST process of the tree at each sample (a
  worker, or the master when it is larger), not every worker, so its p50 reads high: a typical
  worker is smaller. Empty when there are no such points;
- worker_rss: worker_memory where the measure is RSS, else empty (PSS series do not tell RSS);
- judges: "each" when there are such points, else None (the series cannot tell
  children none from sum, or from a tree without children);
- cpu_cores: the increase of memwatch_process_cpu_seconds_total over the window, summed over the
  group, divided by the time the group was observed in the window (from its first sample to now).
  That is the program's mean use while it was watched, so a listener started an hour before a 7d
  window does not read as nearly idle. A gap in the middle (the listener or Prometheus down)
  still reads as idle time;
- kind: "unknown" (the series do not say what a program runs; the caller fills it in).

One host only: the advice weighs programs against the memory and CPUs of the host `advise` runs
on. Pooling the series of several listeners (several `instance` labels) would add other hosts'
processes and CPU use to this host's. So when several instances have series in the window and
none is named, observe_history lists them and asks for --instance instead of mixing them.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from listener.core.text import format_duration, quoted
from listener.tools.advice import Observed
from listener.tools.promapi import HistoryError, Prometheus, Series, duration

__all__ = ["HistoryError", "observe_history"]

TREE = "memwatch_process_tree_memory_bytes"
MEMORY = "memwatch_process_memory_bytes"
LIMIT = "memwatch_process_memory_limit_bytes"
CHILDREN = "memwatch_process_children"
CPU = "memwatch_process_cpu_seconds_total"
MAX_POINTS = 1000  # per series of a range query (Prometheus refuses more than 11,000)
MIN_STEP_MS = 1000  # a shorter step only finds empty steps between scrapes


def observe_history(url: str, window: float, timeout: float = 10.0,
                    instance: str | None = None) -> list[Observed]:
    """What Prometheus at `url` holds of the listener's series over the last `window` seconds,
    per program (see the module's docstring). Raises HistoryError, one line, if it cannot."""
    if window <= 0 or timeout <= 0:
        raise ValueError(f"window and timeout must be more than 0 (got {window}, {timeout})")
    prometheus = Prometheus(url, timeout)
    now = prometheus.time()
    matcher = _instance_matcher(prometheus, window, now, instance)
    return _observe(prometheus, window, now, matcher)


def _label(value: str) -> str:
    """A PromQL string literal (JSON's escapes are among Go's, which PromQL takes)."""
    return json.dumps(value, ensure_ascii=False)


def _instance_matcher(prometheus: Prometheus, window: float, now: float,
                      instance: str | None) -> str:
    """The matcher of the one instance to read: the one asked for, else the only one with
    series in the window (a series without an instance label matches instance="")."""
    where = f"Prometheus at {prometheus.shown}"
    span = format_duration(window)
    window_ms = duration(max(1, round(window * 1000)))
    found = prometheus.instant(f"count by (instance) (count_over_time({TREE}[{window_ms}]))", now)
    names = sorted(s.labels.get("instance", "") for s in found)
    listed = quoted(", ".join(n or "(no instance label)" for n in names))
    if instance is not None and instance not in names:
        seen = f"instances with series: {listed}" if names \
            else "is it scraping the listener?"
        raise HistoryError(f"no samples yet: {where} has no {TREE} series with instance="
                           f"{quoted(_label(instance))} in the last {span}; {seen}")
    if instance is None and not names:
        raise HistoryError(f"no samples yet: {where} has no {TREE} series in the last {span}; "
                           "is it scraping the listener?")
    if instance is None and len(names) > 1:
        raise HistoryError(f"{where} has {TREE} series from several instances in the last {span} "
                           f"({listed}): pass --instance with this host's")
    return f"instance={_label(instance if instance is not None else names[0])}"


@dataclass
class _Now:
    """A group as it is now: its processes, their measures, children and limits."""

    processes: set[str] = field(default_factory=set)
    measures: Counter[str] = field(default_factory=Counter)
    children: list[float] = field(default_factory=list)
    limits: list[float] = field(default_factory=list)

    def measure(self) -> str | None:
        """The measure of most processes (ties: by name)."""
        return min(self.measures, key=lambda m: (-self.measures[m], m)) if self.measures else None


def _observe(prometheus: Prometheus, window: float, now: float, matcher: str) -> list[Observed]:
    step_ms = max(MIN_STEP_MS, math.ceil(window * 1000 / MAX_POINTS))
    step, window_ms = duration(step_ms), duration(max(1, round(window * 1000)))
    names = "|".join((TREE, MEMORY, LIMIT, CHILDREN))
    groups = _now(prometheus.instant(f'{{__name__=~"{names}",{matcher}}}', now))
    if not groups:
        raise HistoryError(f"Prometheus at {prometheus.shown} has {TREE} series in the last "
                           f"{format_duration(window)} but none now: is the listener still running, and "
                           "Prometheus still scraping it?")

    def ranged(name: str) -> dict[str, list[Series]]:
        query = f"max_over_time({name}{{{matcher}}}[{step}])"
        return _by_group(prometheus.range(query, now - window, now, step))

    tree, memory = ranged(TREE), ranged(MEMORY)
    cpu = _by_group(prometheus.instant(f"sum by (group) (increase({CPU}{{{matcher}}}[{window_ms}]))",
                                       now))
    span = (now, window, step_ms / 1000)
    return [_group(name, groups[name], tree.get(name, []), memory.get(name, []),
                   _total(cpu.get(name, [])), span)
            for name in sorted(groups)]


def _now(series: Iterable[Series]) -> dict[str, _Now]:
    """The groups that have a tree memory series now, with what their series say now."""
    groups: defaultdict[str, _Now] = defaultdict(_Now)
    for s in series:
        g = groups[s.labels.get("group", "")]
        name, value = s.labels.get("__name__"), s.points[0][1]
        if name == TREE:
            g.processes.add(s.labels.get("process", ""))
        elif name == MEMORY and "measure" in s.labels:
            g.measures[s.labels["measure"]] += 1
        elif name == CHILDREN and math.isfinite(value):
            g.children.append(value)
        elif name == LIMIT and math.isfinite(value):
            g.limits.append(value)
    return {name: g for name, g in groups.items() if g.processes}


def _by_group(series: Iterable[Series]) -> dict[str, list[Series]]:
    grouped: defaultdict[str, list[Series]] = defaultdict(list)
    for s in series:
        grouped[s.labels.get("group", "")].append(s)
    return grouped


def _total(series: Sequence[Series]) -> float:
    return sum(v for s in series for _, v in s.points if math.isfinite(v))


def _group(name: str, now: _Now, tree: Sequence[Series], memory: Sequence[Series],
           cpu_seconds: float, span: tuple[float, float, float]) -> Observed:
    measure = now.measure()
    kept = [s for s in tree if measure is None or s.labels.get("measure") == measure]
    workers = _workers(kept, memory)
    return Observed(
        program=name, kind="unknown", processes=len(now.processes),
        children_per_process=sum(now.children) / len(now.children) if now.children else 0.0,
        worker_memory=workers,
        process_memory=[int(v) for s in kept for _, v in s.points if math.isfinite(v)],
        cpu_cores=_cores(cpu_seconds, tree, *span),
        limit=int(max(now.limits)) if now.limits else None, measure=measure,
        judges="each" if workers else None, worker_rss=workers if measure == "rss" else ())


def _workers(tree: Sequence[Series], memory: Sequence[Series]) -> list[int]:
    """memory_bytes at the points where it is below the tree's memory (same process, measure
    and time): the figure of the largest process of a tree judged process by process."""
    figures = {(s.labels.get("process"), s.labels.get("measure")): dict(s.points) for s in memory}
    found = []
    for s in tree:
        mine = figures.get((s.labels.get("process"), s.labels.get("measure")), {})
        for t, whole in s.points:
            figure = mine.get(t)
            if figure is not None and math.isfinite(figure) and figure < whole:
                found.append(int(figure))
    return found


def _cores(cpu_seconds: float, tree: Sequence[Series], now: float, window: float,
           step: float) -> float:
    """Mean cores over the time the group was observed: from its first point (whose sample lies
    within the step before it) to now, at most the window."""
    first = min((s.points[0][0] for s in tree if s.points), default=None)
    if first is None:
        return 0.0
    observed = min(window, now - first + step)
    return max(0.0, cpu_seconds / observed) if observed > 0 else 0.0
