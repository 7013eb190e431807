"""The PSS/USS book: a page-table walk where the verdict depends on it and at first sight; the
other figures shown capped by the RSS now, with their age, and walked again oldest first within
the tick's budget, never before MIN_AGE, always by MAX_AGE."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from listener.host.figures import MAX_AGE, MIN_AGE, Figures

MiB = 2**20


class World:
    """A clock that ticks when told, and a kernel whose figures (and walk costs) the test sets."""

    def __init__(self, every_tick: bool = False, walk_cost: float = 0.001) -> None:
        self.now = 1000.0
        self.pss: dict[int, int] = {}
        self.walks: list[int] = []
        self.spent = 0.0  # the timer: each walk costs walk_cost seconds
        self.walk_cost = walk_cost
        self.book = Figures(self.read, every_tick, clock=lambda: self.now, timer=lambda: self.spent)

    def read(self, pid: int) -> tuple[int, int] | None:
        if pid not in self.pss:
            return None
        self.walks.append(pid)
        self.spent += self.walk_cost
        return self.pss[pid], self.pss[pid] // 2

    def tick(self, units: dict[int, tuple[int, bool]], measure: str = "pss", seconds: float = 5.0,
             budget: float = 0.0) -> dict[int, tuple[int, float] | None]:
        """One tick of `seconds`: {pid: (rss, deciding)} -> {pid: (bytes, age)} as shown first,
        then the refresh within `budget`, whose fresh figures replace what was shown."""
        self.now += seconds
        self.walks.clear()
        self.book.begin()
        got = {pid: self.book.figure((pid, 1.0), measure, rss, deciding)
               for pid, (rss, deciding) in units.items()}
        for (pid, _), (pss, uss) in self.book.refresh(budget).items():
            got[pid] = (pss if measure == "pss" else uss, 0.0)
        self.book.end()
        return got


def test_a_deciding_unit_is_walked_every_tick() -> None:
    world = World()
    world.pss[7] = 300 * MiB
    for _ in range(5):
        assert world.tick({7: (500 * MiB, True)}) == {7: (300 * MiB, 0.0)}
        assert world.walks == [7]


def test_a_figure_between_walks_is_capped_by_the_rss_now_and_told_its_age() -> None:
    world = World()
    world.pss[7] = 300 * MiB
    assert world.tick({7: (500 * MiB, False)}) == {7: (300 * MiB, 0.0)}  # first sight
    world.pss[7] = 100 * MiB  # the kernel's figure moved; not walked again yet
    assert world.tick({7: (200 * MiB, False)}) == {7: (200 * MiB, 5.0)}  # PSS <= RSS
    assert world.tick({7: (400 * MiB, False)}) == {7: (300 * MiB, 10.0)}
    assert world.tick({7: (400 * MiB, False)}, measure="uss") == {7: (150 * MiB, 15.0)}
    assert world.walks == []


def test_nothing_is_walked_again_before_min_age_whatever_the_budget() -> None:
    world = World()
    world.pss.update({1: MiB, 2: MiB})
    world.tick({1: (MiB, False), 2: (MiB, False)})
    ticks = 0
    world.walks.clear()
    while not world.walks:
        ticks += 1
        world.tick({1: (MiB, False), 2: (MiB, False)}, budget=10.0)
    assert ticks * 5.0 >= MIN_AGE and sorted(world.walks) == [1, 2]


def test_the_oldest_are_walked_again_within_the_budget() -> None:
    world = World(walk_cost=0.004)
    world.pss.update({1: MiB, 2: MiB, 3: MiB})
    world.tick({1: (MiB, False)})
    world.tick({1: (MiB, False), 2: (MiB, False)})
    world.tick({1: (MiB, False), 2: (MiB, False), 3: (MiB, False)})
    units = {1: (MiB, False), 2: (MiB, False), 3: (MiB, False)}
    got = world.tick(units, seconds=MIN_AGE, budget=0.009)  # room for two walks of 4 ms
    assert world.walks == [1, 2]
    assert got[1] == (MiB, 0.0) and got[3] == (MiB, MIN_AGE)  # the youngest waits


def test_a_figure_max_age_old_is_walked_whatever_the_budget() -> None:
    world = World()
    world.pss[7] = MiB
    world.tick({7: (MiB, False)})
    world.tick({7: (MiB, False)}, seconds=MAX_AGE - 1, budget=0.0)
    assert world.walks == []
    world.tick({7: (MiB, False)}, seconds=1.0, budget=0.0)
    assert world.walks == [7]


def test_every_tick_walks_every_unit() -> None:
    world = World(every_tick=True)
    world.pss.update({1: MiB, 2: MiB})
    for _ in range(3):
        world.tick({1: (MiB, False), 2: (MiB, False)})
        assert sorted(world.walks) == [1, 2]


def test_a_unit_not_sampled_is_forgotten_and_a_gone_one_has_no_figure() -> None:
    world = World()
    world.pss[7] = MiB
    world.tick({7: (MiB, False)})
    world.tick({})
    world.tick({7: (MiB, False)})
    assert world.walks == [7]  # walked again: first sight after being forgotten
    del world.pss[7]
    assert world.tick({7: (MiB, True)}) == {7: None}


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 400), cost_ms=st.integers(1, 20))
def test_without_budget_the_max_age_pace_walks_a_few_a_tick_never_a_burst(n: int,
                                                                          cost_ms: int) -> None:
    """Units first seen together (the listener's start): at TICK_5, no later tick walks more
    than the pace owes (n x 5 s / MAX_AGE, carried over), and no figure shown is older than
    MAX_AGE and a tick, over two periods."""
    world = World(walk_cost=cost_ms / 1000)
    world.pss.update({pid: MiB for pid in range(n)})
    units = {pid: (2 * MiB, False) for pid in range(n)}
    world.tick(units)
    pace = n * 5.0 / MAX_AGE
    for _ in range(int(2 * MAX_AGE / 5)):
        got = world.tick(units, budget=0.0)
        assert len(world.walks) <= int(pace) + 2, (len(world.walks), pace)
        assert all(g is not None and g[1] <= MAX_AGE + 5.0 for g in got.values())
