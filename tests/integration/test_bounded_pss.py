"""PSS at the cost of RSS decides exactly what a full PSS tick decides, on real trees.

A prefork master whose children share its pages and hold their own, and a flat process: their
RSS, PSS and USS lie far apart. Limits are put between every two figures any rule could compare
(per unit, per tree), so a figure that moved by a few pages between two reads cannot flip a
verdict. One bounded sampler keeps its book across every example (stale figures are the case
that matters); a full sampler walks every unit every tick. Their verdicts and actions must be
the same, tick after tick, with `consecutive` carrying state between ticks."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from listener.core.model import ProcessInfo, Restart, SignalChild
from listener.core.policy import Decision, PolicyState, decide
from listener.core.rules import Rules, Strategy
from listener.host.sampler import Sampler
from listener.supervisord.rpc import boot_clock
from tests.harness import HOG, PY, wait_for

MiB = 2**20


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Iterator[list[ProcessInfo]]:
    ready = tmp_path_factory.mktemp("pss")
    started = [
        subprocess.Popen([PY, str(HOG), "--shared-mb", "60", "--children", "3", "--child-mb",
                          "20", "--ready-file", str(ready / "tree")]),
        subprocess.Popen([PY, str(HOG), "--mb", "40", "--ready-file", str(ready / "flat")]),
    ]
    try:
        wait_for(lambda: all((ready / n).exists() for n in ("tree", "flat")), what="allocated")
        yield [ProcessInfo("pss", name, p.pid, "RUNNING", time.time(), listed_at=boot_clock())
               for name, p in zip(("tree", "flat"), started, strict=True)]
    finally:
        for p in started:
            for child in psutil.Process(p.pid).children(recursive=True):
                child.kill()
            p.kill()
            p.wait()


def figures_far_apart(processes: list[ProcessInfo]) -> list[int]:
    """Midpoints between the figures a rule could compare (each unit's RSS, PSS and USS, and
    each tree's sums), where two neighbours are at least 4 MiB apart."""
    seen: list[int] = []
    for proc in processes:
        units = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        full = [u.memory_full_info() for u in units]
        for field in ("rss", "pss", "uss"):
            values = [getattr(f, field) for f in full]
            seen += [*values, sum(values)]
    seen.sort()
    return [(a + b) // 2 for a, b in zip(seen, seen[1:], strict=False) if b - a >= 4 * MiB]


BOUNDED = Sampler()  # one book across every example and tick: its figures get stale


def verdicts(decision: Decision) -> list[tuple]:
    """What was decided, without the figures (read at other moments by the two samplers)."""
    said = [(j.process.namespec, j.verdict, j.over, j.over_samples) for j in decision.judgements]
    for action in decision.actions:
        if isinstance(action, SignalChild):
            said.append(("signal", action.target.namespec, action.child_pid, action.signal))
        else:
            assert isinstance(action, Restart)
            said.append(("restart", action.target.namespec, action.target.by, action.escalates))
    return said


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), measure=st.sampled_from(["pss", "uss"]),
       children=st.sampled_from(["none", "each", "sum"]), consecutive=st.integers(1, 2))
def test_bounded_pss_decides_what_full_pss_decides(trees, data, measure, children,
                                                   consecutive) -> None:
    limits = figures_far_apart(trees)
    limit = data.draw(st.sampled_from(limits))
    strategy = Strategy(measure=measure, children=children, consecutive=consecutive,
                        child_signal=15 if children == "each" else None)
    rules = Rules(any=limit, strategy=strategy)
    full = Sampler(pss_every_tick=True)
    states = [PolicyState(), PolicyState()]
    now = time.time()
    for tick in range(3):
        decided = []
        for i, sampler in enumerate((BOUNDED, full)):
            result = sampler.sample(trees, rules, now=now)
            assert not result.errors
            decision = decide(trees, result.samples, rules, states[i], now + tick)
            states[i] = decision.state
            decided.append(verdicts(decision))
        assert decided[0] == decided[1], (limit, decided)


def test_only_units_over_their_rss_limit_are_walked(trees) -> None:
    sampler = Sampler()
    rules = Rules(any=10**12, strategy=Strategy(measure="pss", children="each"))
    sampler.sample(trees, rules)
    assert sampler.figures.walks == 5  # first sight: the master, 3 children, the flat one
    sampler.sample(trees, rules)
    assert sampler.figures.walks == 0  # nothing near its limit, nothing due
    flat_rss = psutil.Process(trees[1].pid).memory_info().rss
    tight = replace(rules, programs=(("pss:flat", flat_rss // 2),))
    result = sampler.sample(trees, tight)
    assert sampler.figures.walks == 1  # the flat one: its RSS is over, its PSS decides
    assert result.samples["pss:flat"].age == 0.0
    assert result.samples["pss:tree"].age > 0.0
