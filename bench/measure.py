"""Timing helpers: repeat a call, keep min/median/max; percentiles of many samples."""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Seconds (or any unit) over `n` repetitions."""

    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(min(values), statistics.median(values), max(values), len(values))


def timings(fn: Callable[[], object], reps: int, warmup: int = 1,
            budget: float | None = None, min_reps: int = 3) -> list[float]:
    """Seconds of `reps` calls of `fn` after `warmup` untimed calls; the garbage collector
    runs between calls, not inside them, so one repetition does not pay for another's garbage.
    With a budget (seconds), stop early once it is spent and `min_reps` are done."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(reps):
        if budget is not None and len(times) >= min_reps and sum(times) >= budget:
            break
        gc.collect()
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return times


def repeat(fn: Callable[[], object], reps: int, warmup: int = 1,
           budget: float | None = None, min_reps: int = 3) -> Summary:
    return Summary.of(timings(fn, reps, warmup, budget, min_reps))


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Percentiles:
    """Many one-off timings (seconds), e.g. event answers: kept as the figures the targets and
    the report read, so the results file holds a few numbers rather than every sample."""

    n: int
    p50: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles:
        if not values:  # nothing measured: NaN fails every target rather than passing one
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(len(values), percentile(values, 50), percentile(values, 99), max(values),
                   statistics.fmean(values))


def ms(seconds: float) -> str:
    """Milliseconds with sensible precision for a table."""
    value = seconds * 1000
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def us(seconds: float) -> str:
    value = seconds * 1e6
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def span(s: Summary, unit: Callable[[float], str] = ms) -> str:
    """'median (min–max)'."""
    return f"{unit(s.median)} ({unit(s.min)}–{unit(s.max)})"


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "n/a"
    r = a / b
    return f"{r:.0f}x" if r >= 100 else f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"
