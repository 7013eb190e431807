"""The listener against the kernel's OOM killer, once a tick: say whom it killed (a log line,
the counters, the status page) and, where a rule asks for it (`oom-score-adj = N`), make it
pick a process its master or supervisord replaces, by writing /proc/PID/oom_score_adj of the
rule's processes and of every worker they fork, once per process start."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import psutil

from listener.core.model import ProcessInfo, Sample
from listener.core.oom import Kill
from listener.core.rules import Rules
from listener.core.text import format_size
from listener.host.oom import KernelKills
from listener.log import fields
from listener.web.stats import Counter, Stats

log = logging.getLogger("memwatch.oom")

KILLED = "killed by the kernel's OOM killer"


class ScoreAdjuster:
    """oom_score_adj written once per process start (a pid and its start time); a failure is
    said once per process and reason (a lower value than the current needs CAP_SYS_RESOURCE).
    A tree whose pids are those of the last tick costs one comparison, not one per pid."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._trees: dict[str, tuple[tuple[object, ...], set[tuple[int, float]]]] = {}
        self._said: set[tuple[str, str]] = set()
        self._rules: Rules | None = None
        self._values: dict[str, int | None] = {}  # by namespec, for the rules in force

    def adjust(self, processes: Sequence[ProcessInfo], samples: Mapping[str, Sample],
               rules: Rules) -> None:
        if all(s.oom_score_adj is None for s in rules.strategies):
            self._trees.clear()
            return
        if rules is not self._rules:
            self._rules, self._values = rules, {}
        trees: dict[str, tuple[tuple[object, ...], set[tuple[int, float]]]] = {}
        for proc in processes:
            namespec = proc.namespec
            sample = samples.get(namespec)
            if namespec not in self._values:
                self._values[namespec] = rules.strategy_for(proc.group, proc.name).oom_score_adj
            value = self._values[namespec]
            if sample is None or value is None:
                continue
            members = sample.members
            key = (value, *[u.pid for u in members], *[u.started for u in members])
            known = self._trees.get(namespec)
            if known is not None and known[0] == key:
                trees[namespec] = known
                continue
            done = known[1] if known is not None and known[0][0] == value else set()
            units = {(u.pid, u.started) for u in members}
            for pid, _ in units - done:
                self._write(namespec, pid, value)
            trees[namespec] = (key, units)
        self._trees = trees  # processes gone are forgotten; one seen again is written again

    def _write(self, namespec: str, pid: int, value: int) -> None:
        try:
            with open(f"{self.proc_root}/{pid}/oom_score_adj", "w") as f:
                f.write(str(value))
        except (FileNotFoundError, ProcessLookupError):
            return  # exited since the sample
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if (namespec, reason) not in self._said:
                self._said.add((namespec, reason))
                log.warning("oom_score_adj not set", extra=fields(
                    process=namespec, pid=pid, oom_score_adj=value, error=reason))
            return
        log.debug("oom_score_adj set", extra=fields(process=namespec, pid=pid,
                                                    oom_score_adj=value))


class OomWatch:
    def __init__(self, stats: Stats, kernel: KernelKills | None = None,
                 adjuster: ScoreAdjuster | None = None) -> None:
        self.stats = stats
        self.kernel = kernel or KernelKills(boot_time=psutil.boot_time())
        self.adjuster = adjuster or ScoreAdjuster()
        self.kernel.open()
        stats.oom_source(self.kernel.source)

    def tick(self, processes: Sequence[ProcessInfo], samples: Mapping[str, Sample],
             rules: Rules) -> None:
        """After the tick's samples: new processes' oom_score_adj, then the kills since the last
        tick, each said once and counted."""
        self.adjuster.adjust(processes, samples, rules)
        found = self.kernel.poll(processes, samples)
        for kill, seen in found.watched:
            counted = self.stats.count(seen.namespec, Counter.OOM_KILLS)
            if not counted:  # a supervised process no rule watches: no series of its own
                self.stats.host_oom_kills(1)
            log.error(f"{'worker' if seen.worker else 'process'} {KILLED}", extra=fields(
                process=seen.namespec, pid=kill.pid, comm=kill.comm,
                **_memory(kill), last_sample=f"{format_size(seen.bytes)} {seen.measure}",
                watched=counted))
        for kill in found.others:
            self.stats.host_oom_kills(1)
            log.error(f"a process memwatch does not watch was {KILLED}", extra=fields(
                pid=kill.pid, comm=kill.comm, **_memory(kill)))
        if found.uncounted:
            self.stats.host_oom_kills(found.uncounted)
            log.error(f"processes {KILLED}, not attributed (/proc/vmstat's count)",
                      extra=fields(kills=found.uncounted, source=self.kernel.source))

    def close(self) -> None:
        self.kernel.close()


def _memory(kill: Kill) -> dict[str, object]:
    where: dict[str, object] = {"oom": "memory cgroup" if kill.memcg else "host"}
    if kill.rss is None:
        return where
    return {"memory_at_kill": f"{format_size(kill.rss)} rss", **where}

