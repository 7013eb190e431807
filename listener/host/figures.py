"""PSS and USS at the cost of RSS: the page-table walk only where a verdict depends on it.

The kernel works PSS and USS out by walking a process's page tables (/proc/PID/smaps_rollup), so
reading them costs milliseconds at the sizes Sentry's workers run at, where RSS (statm) costs
microseconds at any size. PSS is never above RSS and USS never above PSS: a unit whose RSS is
at or under its limit cannot be over it in PSS or USS, and its PSS decides nothing this tick.

So the sampler reads RSS for every unit, and asks this book for the PSS/USS figure:
- a unit whose verdict depends on it (`deciding`: its RSS, or its tree's for `children = sum`,
  is over the limit) is walked now, every tick; so is a unit seen for the first time;
- any other unit shows its last figure, capped by its RSS now (a figure above the RSS is known
  to be out of date), with the figure's age. After the tick's RSS pass, the oldest such figures
  are walked again: at the pace that walks every one within MAX_AGE (a fraction of a walk a
  tick, carried over: never a burst), and more while their expected cost fits in a budget equal
  to that pass's own time, none younger than MIN_AGE. A tick that decides nothing costs about
  the RSS tick plus one walk now and then (bench/RESULTS.md section 3).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MIN_AGE = 30.0  # seconds: a figure younger than this is not walked again for the page
# seconds: every figure is walked again within this. 300 workers at 600 MiB cost 12 ms a walk
# against a 13.5 ms RSS tick here: every 30 minutes is 0.86 walks a TICK_5 tick, which keeps the
# tick under 2x the RSS tick; every 60 s would be 26 walks a tick, 24x (bench section 3)
MAX_AGE = 1800.0

Key = tuple[int, float]  # (pid, start time)


@dataclass
class _Read:
    pss: int
    uss: int
    at: float  # monotonic seconds
    cost: float  # seconds the walk took: what walking it again is expected to cost


class Figures:
    """The last PSS/USS read of each unit (pid, start time), kept while the unit is sampled."""

    def __init__(self, read: Callable[[int], tuple[int, int] | None], every_tick: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        self._read = read  # (pss, uss) of a pid; None if it is gone; may raise OSError
        self.every_tick = every_tick  # every figure walked every tick (advise's measurements)
        self._clock, self._timer = clock, timer
        self._reads: dict[Key, _Read] = {}
        self._seen: set[Key] = set()
        self._stale: set[Key] = set()  # shown from an earlier walk this tick
        self._now = clock()
        self._before: float | None = None  # when the last tick began
        self._credit = 0.0  # walks owed to the MAX_AGE pace, carried from tick to tick
        self.walks = 0  # page-table walks this tick
        self.walked = 0.0  # seconds spent walking this tick

    def begin(self) -> None:
        self._before, self._now = self._now, self._clock()
        self._seen, self._stale = set(), set()
        self.walks, self.walked = 0, 0.0

    def end(self) -> None:
        """Forget the units not sampled this tick (exited, or no longer watched)."""
        self._reads = {k: v for k, v in self._reads.items() if k in self._seen}

    def figure(self, key: Key, measure: str, rss: int, deciding: bool) -> tuple[int, float] | None:
        """(bytes, seconds since read) of `measure` ("pss" or "uss") for the unit (pid, start
        time); None when it is gone. Raises what the read raises (PermissionError)."""
        self._seen.add(key)
        last = self._reads.get(key)
        if deciding or last is None or self.every_tick:
            last = self._walk(key)
            return None if last is None else (_of(last, measure), 0.0)
        self._stale.add(key)
        return min(_of(last, measure), rss), self._now - last.at

    def refresh(self, budget: float) -> dict[Key, tuple[int, int]]:
        """Walk again the oldest figures shown this tick: as many as the MAX_AGE pace owes (and
        any MAX_AGE old) whatever they cost, then others at least MIN_AGE old while their
        expected cost fits in `budget` seconds. {key: (pss, uss)} of those walked; a unit gone
        or unreadable is left as it was."""
        done: dict[Key, tuple[int, int]] = {}
        spent = 0.0
        elapsed = self._now - self._before if self._before is not None else 0.0
        self._credit = min(self._credit + len(self._stale) * elapsed / MAX_AGE,
                           float(len(self._stale)))
        for key in sorted(self._stale, key=lambda k: self._reads[k].at):
            last = self._reads[key]
            age = self._now - last.at
            owed = self._credit >= 1 or age >= MAX_AGE
            if not owed and age < MIN_AGE:
                break  # the rest are younger still
            if not owed and spent + last.cost > budget:
                continue  # a cheaper one may still fit
            if self._credit >= 1:
                self._credit -= 1
            before = self.walked
            try:
                fresh = self._walk(key)
            except OSError:
                fresh = None
            spent += self.walked - before
            if fresh is not None:
                done[key] = (fresh.pss, fresh.uss)
        return done

    def _walk(self, key: Key) -> _Read | None:
        began = self._timer()
        try:
            read = self._read(key[0])
        finally:
            cost = self._timer() - began
            self.walked += cost
        if read is None:
            return None
        self.walks += 1
        self._reads[key] = _Read(read[0], read[1], self._now, cost)
        return self._reads[key]


def _of(read: _Read, measure: str) -> int:
    return read.pss if measure == "pss" else read.uss
