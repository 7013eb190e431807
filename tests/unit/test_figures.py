"""The PSS/USS book: a page-table walk where the verdict depends on it, else at a bounded pace,
a figure between walks capped by the RSS now and told with its age."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from listener.host.figures import PSS_REFRESH_SECONDS, Figures

MiB = 2**20


class World:
    """A clock that ticks when told, and a kernel whose figures the test sets."""

    def __init__(self, refresh: float = PSS_REFRESH_SECONDS) -> None:
        self.now = 1000.0
        self.pss: dict[int, int] = {}
        self.walks: list[int] = []
        self.book = Figures(self.read, refresh, clock=lambda: self.now)

    def read(self, pid: int) -> tuple[int, int] | None:
        if pid not in self.pss:
            return None
        self.walks.append(pid)
        return self.pss[pid], self.pss[pid] // 2

    def tick(self, units: dict[int, tuple[int, bool]], measure: str = "pss",
             seconds: float = 5.0) -> dict[int, tuple[int, float] | None]:
        """One tick of `seconds`: {pid: (rss, deciding)} -> {pid: (bytes, age)}."""
        self.now += seconds
        self.walks.clear()
        self.book.begin()
        got = {pid: self.book.figure(pid, 1.0, measure, rss, deciding)
               for pid, (rss, deciding) in units.items()}
        self.book.end()
        return got


def test_a_deciding_unit_is_walked_every_tick() -> None:
    world = World()
    world.pss[7] = 300 * MiB
    for _ in range(5):
        assert world.tick({7: (500 * MiB, True)}) == {7: (300 * MiB, 0.0)}
        assert world.walks == [7]


def test_an_undeciding_unit_is_walked_at_first_sight_then_within_the_period() -> None:
    world = World()
    world.pss[7] = 300 * MiB
    assert world.tick({7: (500 * MiB, False)}) == {7: (300 * MiB, 0.0)}
    walked_at = [0.0]
    for i in range(1, 40):  # 195 s of TICK_5
        got = world.tick({7: (500 * MiB, False)})[7]
        assert got is not None and got[1] <= PSS_REFRESH_SECONDS
        if world.walks:
            walked_at.append(i * 5.0)
    gaps = [b - a for a, b in zip(walked_at, walked_at[1:], strict=False)]
    assert PSS_REFRESH_SECONDS / 2 <= gaps[0] <= PSS_REFRESH_SECONDS  # first re-read spread
    assert all(gap == PSS_REFRESH_SECONDS for gap in gaps[1:])


def test_a_figure_between_walks_is_capped_by_the_rss_now_and_told_its_age() -> None:
    world = World()
    world.pss[7] = 300 * MiB
    world.tick({7: (500 * MiB, False)})
    world.pss[7] = 100 * MiB  # the kernel's figure moved; not walked yet
    assert world.tick({7: (200 * MiB, False)}) == {7: (200 * MiB, 5.0)}  # PSS <= RSS
    assert world.tick({7: (400 * MiB, False)}) == {7: (300 * MiB, 10.0)}
    assert world.tick({7: (400 * MiB, False)}, measure="uss") == {7: (150 * MiB, 15.0)}


def test_refresh_zero_walks_every_unit_every_tick() -> None:
    world = World(refresh=0)
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
    assert world.walks == [7]  # read again: first sight after being forgotten
    del world.pss[7]
    assert world.tick({7: (MiB, True)}) == {7: None}


@settings(max_examples=200, deadline=None)
@given(pids=st.lists(st.integers(2, 4_000_000), min_size=1, max_size=300, unique=True))
def test_no_tick_pays_for_every_unit_after_the_first(pids: list[int]) -> None:
    """Workers started together are walked together once, then spread: at TICK_5 no later tick
    walks more than about a sixth of them, and each is walked at least once a period."""
    world = World()
    world.pss.update({pid: MiB for pid in pids})
    units = {pid: (2 * MiB, False) for pid in pids}
    world.tick(units)
    last = dict.fromkeys(pids, world.now)
    for _ in range(36):  # three minutes
        got = world.tick(units)
        assert len(world.walks) <= max(2, len(pids) // 6 + 2)
        for pid in world.walks:
            last[pid] = world.now
        assert all(world.now - last[pid] <= PSS_REFRESH_SECONDS for pid in pids)
        assert all(g is not None and g[1] <= PSS_REFRESH_SECONDS for g in got.values())
