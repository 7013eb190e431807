"""The trend of a watched figure and the time left to its limit, from the status history."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from listener.core.trend import current_run, growth, time_to_limit

MiB = 2**20


def climbing(start: float, rate: float, n: int, t0: float = 0.0, step: float = 5.0):
    return [(t0 + i * step, int(start + rate * i * step)) for i in range(n)]


def test_a_steady_leak_gives_its_rate_and_the_time_left() -> None:
    history = climbing(200 * MiB, 1 * MiB / 60, 60)  # 1 MiB a minute for 5 minutes
    assert growth(history) == pytest.approx(MiB / 60, rel=1e-3)
    left = time_to_limit(history, 300 * MiB)
    assert left == pytest.approx((300 * MiB - history[-1][1]) / (MiB / 60), rel=1e-2)  # ~95 min


def test_the_sawtooth_of_restarts_is_not_a_flat_line() -> None:
    history = climbing(100 * MiB, MiB, 30) + climbing(100 * MiB, MiB, 30, t0=150.0)
    assert current_run(history) == history[30:]
    assert growth(history) == pytest.approx(MiB, rel=1e-3)


@pytest.mark.parametrize("history, limit", [
    (climbing(200 * MiB, 0, 60), 300 * MiB),  # flat: never
    (climbing(300 * MiB, -MiB / 60, 60), 400 * MiB),  # shrinking
    (climbing(200 * MiB, MiB, 60), 100 * MiB),  # already over
    (climbing(200 * MiB, MiB, 5), 400 * MiB),  # too few samples to tell
    (climbing(200 * MiB, MiB, 20, step=1.0), 400 * MiB),  # too short a span
    ([], 400 * MiB),
])
def test_no_time_is_said_when_there_is_none_to_say(history, limit) -> None:
    assert time_to_limit(history, limit) is None


@given(st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.integers(0, 2**40)), max_size=130),
       st.integers(1, 2**40))
def test_any_history_gives_a_finite_answer_or_none(history, limit) -> None:
    history.sort()
    left = time_to_limit(history, limit)
    assert left is None or 0.0 <= left < float("inf")
