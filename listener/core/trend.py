"""How fast a watched figure grows, and when it would reach its limit at that pace.

Read from the status history (the figure at every tick, the newest last). A restart, or a large
worker replaced, makes the figure fall: the trend is fitted to the samples since the last fall
(a sawtooth is not a flat line), by least squares, and only over enough of them to mean
something. Alerting does not use this: the shipped alert rule uses Prometheus's own
`predict_linear` on the exported series; this is what the page and `/status` say."""

from __future__ import annotations

from collections.abc import Sequence

FALL = 0.8  # a sample under 80% of the one before: a restart or a worker replaced
MIN_SAMPLES = 6
MIN_SPAN = 120.0  # seconds the fitted samples must cover


def current_run(history: Sequence[tuple[float, int]]) -> Sequence[tuple[float, int]]:
    """The samples since the figure last fell."""
    start = 0
    for i in range(1, len(history)):
        if history[i][1] < FALL * history[i - 1][1]:
            start = i
    return history[start:]


def _fit(history: Sequence[tuple[float, int]]) -> tuple[float, float] | None:
    """(bytes per second, the fitted figure at the newest sample) over the current run; None
    when it is too short to tell."""
    run = current_run(history)
    if len(run) < MIN_SAMPLES or run[-1][0] - run[0][0] < MIN_SPAN:
        return None
    t0 = run[0][0]
    xs = [t - t0 for t, _ in run]
    ys = [float(b) for _, b in run]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread <= 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return slope, mean_y + slope * (xs[-1] - mean_x)


def growth(history: Sequence[tuple[float, int]]) -> float | None:
    """Bytes per second over the current run; None when it is too short to tell."""
    fit = _fit(history)
    return fit[0] if fit else None


def time_to_limit(history: Sequence[tuple[float, int]], limit: int) -> float | None:
    """Seconds from the newest sample until the figure reaches `limit` at the current run's
    pace; None when it is not growing, is already over, or the run is too short to tell."""
    fit = _fit(history)
    if fit is None or fit[0] <= 0 or history[-1][1] >= limit:
        return None
    return max(0.0, (limit - fit[1]) / fit[0])
