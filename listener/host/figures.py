"""PSS and USS at the cost of RSS: the page-table walk only where a verdict depends on it.

The kernel works PSS and USS out by walking a process's page tables (/proc/PID/smaps_rollup), so
reading them costs milliseconds at the sizes Sentry's workers run at, where RSS (statm) costs
microseconds at any size. PSS is never above RSS and USS never above PSS: a unit whose RSS is
at or under its limit cannot be over it in PSS or USS, and its PSS decides nothing this tick.

So the sampler reads RSS for every unit, and asks this book for the PSS/USS figure:
- a unit whose verdict depends on it (`deciding`: its RSS, or its tree's for `children = sum`,
  is over the limit) is read now, every tick;
- any other unit is read at its first sight and then again at least every `refresh` seconds,
  its first re-read spread over the second half of the period by the order units were first
  seen in (a low-discrepancy sequence), so that workers started together, or every unit when
  the listener starts, are not all read on the same tick again. Between reads it shows its last
  figure, capped by its RSS now (a figure above the RSS is known to be out of date), with the
  figure's age.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

PSS_REFRESH_SECONDS = 60.0
_SPREAD = 0.6180339887  # the golden ratio's fraction: k * it mod 1 fills [0, 1) evenly


@dataclass
class _Read:
    pss: int
    uss: int
    at: float  # monotonic seconds
    due: float


class Figures:
    """The last PSS/USS read of each unit (pid, start time), kept while the unit is sampled."""

    def __init__(self, read: Callable[[int], tuple[int, int] | None],
                 refresh: float = PSS_REFRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read  # (pss, uss) of a pid; None if it is gone; may raise OSError
        self.refresh = refresh  # 0: every figure read every tick
        self._clock = clock
        self._reads: dict[tuple[int, float], _Read] = {}
        self._seen: set[tuple[int, float]] = set()
        self._now = clock()
        self.walks = 0  # page-table walks this tick
        self._first_seen = 0  # units seen so far: the next one's place in the spread

    def begin(self) -> None:
        self._now, self._seen, self.walks = self._clock(), set(), 0

    def end(self) -> None:
        """Forget the units not sampled this tick (exited, or no longer watched)."""
        self._reads = {k: v for k, v in self._reads.items() if k in self._seen}

    def figure(self, pid: int, started: float, measure: str, rss: int,
               deciding: bool) -> tuple[int, float] | None:
        """(bytes, seconds since read) of `measure` ("pss" or "uss") for the unit; None when
        it is gone. Raises what the read raises (PermissionError: not readable)."""
        key = (pid, started)
        self._seen.add(key)
        last = self._reads.get(key)
        if deciding or last is None or self._now >= last.due or self.refresh <= 0:
            read = self._read(pid)
            if read is None:
                return None
            self.walks += 1
            phase = 1.0
            if last is None:
                self._first_seen += 1
                phase = 0.5 + 0.5 * (self._first_seen * _SPREAD % 1.0)
            last = _Read(read[0], read[1], self._now, self._now + self.refresh * phase)
            self._reads[key] = last
            return (last.pss if measure == "pss" else last.uss), 0.0
        value = last.pss if measure == "pss" else last.uss
        return min(value, rss), self._now - last.at
