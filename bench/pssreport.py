"""Section 3's tables and target, from a PssRun (bench.pss). Numbers only: what they mean is
written in bench/RESULTS.md."""

from __future__ import annotations

import statistics

from bench import pssread
from bench.measure import ms, ratio
from bench.pss import TICK, LayoutRun, PssRun, Ticks

FACTOR = 2.0  # the target: measure=pss within 2x of measure=rss (median tick)


def _at(values: list[float], indices: list[int]) -> list[float]:
    return [values[i] for i in indices]


def steady_median(t: Ticks, what: str = "wall") -> float:
    return statistics.median(_at(getattr(t, what), t.steady()))


def steady_mean(t: Ticks, what: str = "cpu") -> float:
    return statistics.fmean(_at(getattr(t, what), t.steady()))


def _variant(run: LayoutRun, name: str) -> Ticks | None:
    return next((t for t in run.variants if t.variant == name), None)


def _walks(t: Ticks) -> str:
    if t.walks[0] < 0:
        return ""
    steady = [t.walks[i] for i in t.steady()]
    return f"{statistics.fmean(steady):.1f} / {max(steady)}"


def tick_rows(runs: list[LayoutRun]) -> list[list[str]]:
    rows = [["layout", "units", "variant", "ticks", "first tick", "walks first", "steady tick",
             "steady CPU", "mean CPU", "walks mean / max", "tick / rss"]]
    for run in runs:
        rss = _variant(run, "rss")
        for t in [*run.variants, *([run.memmon] if run.memmon else [])]:
            rows.append([run.layout, str(run.units), t.variant, str(len(t.wall)), ms(t.wall[0]),
                         str(t.walks[0]) if t.walks[0] >= 0 else "", ms(steady_median(t)),
                         ms(steady_median(t, "cpu")), ms(steady_mean(t)), _walks(t),
                         ratio(steady_median(t), steady_median(rss)) if rss else ""])
    return rows


def share_rows(runs: list[LayoutRun]) -> list[list[str]]:
    """Each variant's mean CPU per steady tick as a share of one core at TICK_5."""
    rows = [["layout", "variant", "CPU per tick (mean)", f"share of a core at {TICK:.0f} s ticks"]]
    for run in runs:
        for t in [*run.variants, *([run.memmon] if run.memmon else [])]:
            rows.append([run.layout, t.variant, f"{ms(steady_mean(t))} ms",
                         f"{steady_mean(t) / TICK:.2%}"])
    return rows


def budget_rows(runs: list[LayoutRun]) -> list[list[str]]:
    """Derived, not measured: one walk's CPU from pss full against rss (steady medians), the
    walks a tick could add and stay within 2x of rss, and the refresh period that pace means."""
    rows = [["layout", "units", "CPU per walk", "walks within 2x rss", "refresh for 2x"]]
    for run in runs:
        rss, full = _variant(run, "rss"), _variant(run, "pss full")
        if rss is None or full is None:
            continue
        base = steady_median(rss, "cpu")
        walk = (steady_median(full, "cpu") - base) / run.units
        if walk <= 0:
            continue
        fits = (FACTOR - 1) * base / walk
        rows.append([run.layout, str(run.units), f"{ms(walk)} ms", f"{fits:.1f}",
                     f"{run.units / fits * TICK:.0f} s"])
    return rows


def sections(run: PssRun) -> list[tuple[str, list[list[str]]]]:
    return [("3a. one read of one process, median µs: wall (CPU)", pssread.rows(run.reads)),
            ("3b. ticks over pre-fork trees, --children each (ms; steady: ticks after the first "
             "60 s of the bench clock, pss full and memmon: all but the first)",
             tick_rows(run.layouts)),
            ("3c. the listener's CPU as a share of one core", share_rows(run.layouts)),
            ("3d. derived: the PSS refresh period a 2x target would need (steady CPU medians)",
             budget_rows(run.layouts))]


def targets(run: PssRun) -> list[tuple[str, str, bool]]:
    """(target, measured, met) per layout: the bounded PSS tick within 2x of the RSS tick."""
    out = []
    for lr in run.layouts:
        rss, pss = _variant(lr, "rss"), _variant(lr, "pss bounded")
        if rss is None or pss is None:
            continue
        a, b = steady_median(pss), steady_median(rss)
        out.append((f"tick with measure=pss (bounded) ≤ {FACTOR:.0f}x measure=rss, "
                    f"nothing over, {lr.layout} (steady median)",
                    f"{ratio(a, b)} ({ms(a)} vs {ms(b)} ms; mean CPU "
                    f"{ratio(steady_mean(pss), steady_mean(rss))})", a <= FACTOR * b))
    return out
