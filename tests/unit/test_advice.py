"""listener.tools.advice: observations in, advice out (limits, processes the host holds, sentences)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from listener.tools.advice import (
    FIRST_LINE_ROOM,
    HEADROOM,
    MAX_HEADROOM,
    ROUND,
    SAFETY,
    SELF_HOSTED_MAX_CONCURRENCY,
    Host,
    Observed,
    Percentiles,
    advise,
)
from listener.tools.advice_report import as_json, render

MiB, GiB = 1024**2, 1024**3
HOST = Host(memory_total=16 * GiB, memory_available=8 * GiB, cpus=4)


def worker(**changes: object) -> Observed:
    base = dict(program="sentry-worker", kind="celery", processes=2, children_per_process=4.0,
                worker_memory=[100 * MiB] * 98 + [150 * MiB, 200 * MiB],
                process_memory=[600 * MiB] * 99 + [700 * MiB], cpu_cores=1.0,
                limit=400 * MiB, measure="pss", judges="each")
    return Observed(**{**base, **changes})  # type: ignore[arg-type]


def test_percentiles_are_observed_values_by_nearest_rank() -> None:
    assert Percentiles.of(list(range(1, 101))) == Percentiles(50, 99, 100)
    assert Percentiles.of([7]) == Percentiles(7, 7, 7)
    assert Percentiles.of([]) is None


@given(st.lists(st.integers(min_value=1, max_value=8 * GiB), min_size=1, max_size=200))
def test_the_limit_is_above_every_observed_figure_and_p99_with_headroom(values: list[int]) -> None:
    (a,) = advise(HOST, [worker(worker_memory=values)])
    assert a.recommended_limit is not None
    assert a.recommended_limit > max(values)
    p99 = Percentiles.of(values).p99  # type: ignore[union-attr]
    assert a.recommended_limit >= p99 * HEADROOM
    assert a.recommended_limit % ROUND == 0
    assert a.recommended_limit < max(p99 * HEADROOM, max(values) * MAX_HEADROOM) + ROUND  # no more


def test_a_prefork_programs_limit_guards_each_worker_a_plain_ones_the_process() -> None:
    celery, cron = advise(HOST, [worker(), worker(program="sentry-cron", kind="plain",
                                                    worker_memory=[], children_per_process=0)])
    # the workers': p99 150 MiB x 1.3 = 195 < max 200 x 1.1 = 220, rounded up to 16 MiB: 224
    assert celery.recommended_limit == 224 * MiB
    # the process's: p99 600 MiB x 1.3 = 780 > max 700 x 1.1 = 770, rounded up: 784
    assert cron.recommended_limit == 784 * MiB


def test_the_processes_that_fit_in_memory_keep_a_safety_share_free() -> None:
    (a,) = advise(HOST, [worker(cpu_cores=0.0)])  # idle: memory decides alone
    in_use = (600 * 99 + 700) / 100 * MiB * 2
    expected = int((in_use + 8 * GiB - SAFETY * 16 * GiB) // (600 * MiB))  # over the p99
    assert a.recommended_processes == expected


def test_the_cpus_left_by_the_other_programs_bound_the_processes() -> None:
    busy, other = advise(HOST, [worker(cpu_cores=2.0), worker(program="web", cpu_cores=1.0)])
    assert busy.recommended_processes == 3  # (4 CPUs - 1 used by web) / 1 core per process
    assert other.recommended_processes == 4  # (4 - 2) / 0.5


def test_sentences_for_the_mistakes_the_guide_and_the_figures_show() -> None:
    (a,) = advise(Host(4 * GiB, 100 * MiB, 2), [worker(
        children_per_process=16.0, limit=150 * MiB, measure="rss", judges="none",
        cpu_cores=0.0)])
    said = " | ".join(a.advice)
    assert "16 children per master: Sentry's guide advises more masters at -c 4" in said
    assert "the limit 150.0MiB is below a worker's normal peak (p99 150.0MiB): restarts will loop" in said
    assert "measure = pss" in said
    assert "children = auto" in said
    assert "over-committed" in said and "runs 2" in said


def test_a_program_without_a_rule_gets_one_suggested() -> None:
    (a,) = advise(HOST, [worker(limit=None, measure=None, judges=None)])
    assert a.advice == ("no rule covers this program: limit = 224.0MiB",)


def test_json_has_the_documented_shape() -> None:
    data = json.loads(json.dumps(as_json(HOST, advise(HOST, [worker()]))))
    assert data["host"] == {"memory_total_bytes": 16 * GiB, "memory_available_bytes": 8 * GiB,
                            "cpus": 4}
    (p,) = data["programs"]
    assert set(p) == {"program", "processes", "kind", "children_per_process", "worker_memory_bytes",
                      "process_memory_bytes", "cpu_cores", "recommended_limit_bytes",
                      "recommended_processes", "advice", "workers_max_rss_mib", "concurrency_fits"}
    assert (p["workers_max_rss_mib"], p["concurrency_fits"]) == (None, None)  # Celery: neither
    assert p["worker_memory_bytes"] == {"p50": 100 * MiB, "p99": 150 * MiB, "max": 200 * MiB}


def test_the_table_names_every_program_and_says_how_figures_are_derived() -> None:
    text = render(HOST, advise(HOST, [worker(), worker(program="sentry-web", kind="uwsgi")]))
    lines = text.splitlines()
    assert lines[0] == "host: 16.0GiB memory, 8.0GiB available, 4 CPUs"
    assert lines[1].split()[:4] == ["PROGRAM", "KIND", "PROCS", "CHILDREN"]
    assert [line.split()[0] for line in lines[2:4]] == ["sentry-worker", "sentry-web"]
    assert "p99 x 1.3" in text


def test_a_tree_auto_cannot_tell_is_advised_for_what_the_listener_judges() -> None:
    # the listener judges the supervised pid alone: its limit follows the pid's own figure
    # (100 MiB), not the tree's (400 MiB), and the advice says why and what to change
    seen = Observed(program="jobs", kind="unrecognised tree", processes=1, children_per_process=3.0,
                    worker_memory=[100 * MiB] * 50, process_memory=[400 * MiB] * 50, cpu_cores=0.0,
                    limit=1024 * MiB, measure="pss", judges="none", own_memory=[100 * MiB] * 50)
    (a,) = advise(HOST, [seen])
    assert a.recommended_limit == 144 * MiB  # p99 100 MiB x 1.3, rounded up to 16 MiB (not 400)
    assert any("cannot tell what this program runs" in s and "children = each" in s
               for s in a.advice)


def granian(**changes: object) -> Observed:
    """Two Granian workers of 30-40 MiB PSS, 50-60 MiB RSS (pages shared with the master)."""
    base = dict(program="sentry-web", kind="granian", processes=1, children_per_process=2.0,
                worker_memory=[30 * MiB] * 99 + [40 * MiB], process_memory=[100 * MiB] * 100,
                cpu_cores=0.0, limit=None, measure="pss", judges="each",
                worker_rss=[50 * MiB] * 99 + [60 * MiB])
    return Observed(**{**base, **changes})  # type: ignore[arg-type]


def test_granians_workers_max_rss_is_the_first_line_under_memwatchs_limit() -> None:
    (a,) = advise(HOST, [granian()])
    # workers-max-rss: the headroom rule on the workers' RSS (p99 50 x 1.3 = 65 < max 60 x 1.1 =
    # 66, rounded up to 16 MiB: 80), in MiB as Granian takes it
    assert a.workers_max_rss_mib == 80
    # the PSS rule alone would give 48 MiB (p99 30 x 1.3 < max 40 x 1.1 = 44): under Granian's
    # threshold. memwatch's limit goes 10% above it instead: 88, rounded up to 96
    assert a.recommended_limit == 96 * MiB
    assert a.recommended_limit >= a.workers_max_rss_mib * MiB * FIRST_LINE_ROOM
    (line,) = [s for s in a.advice if "workers-max-rss" in s]
    assert "workers-max-rss = 80 (MiB; reload-on-rss in SENTRY_WEB_OPTIONS" in line
    assert "under the limit 96.0MiB" in line and "p99 50.0MiB" in line
    assert any(s == "no rule covers this program: limit = 96.0MiB" for s in a.advice)
    data = as_json(HOST, [a])["programs"][0]
    assert (data["workers_max_rss_mib"], data["concurrency_fits"]) == (80, None)


def test_a_granian_limit_that_leaves_workers_max_rss_no_room_is_raised() -> None:
    (a,) = advise(HOST, [granian(limit=84 * MiB)])  # above the PSS peak, under 80 MiB x 1.1
    assert any("the limit 84.0MiB is not 10% above workers-max-rss 80: memwatch would act "
               "before Granian's own recycling; raise it to 96.0MiB" in s for s in a.advice)
    (roomy,) = advise(HOST, [granian(limit=700 * MiB)])
    assert not any("would act before" in s for s in roomy.advice)


def test_granian_without_the_workers_rss_gets_the_rule_and_no_figure() -> None:
    # Prometheus's series in PSS: RSS not known, so no workers-max-rss figure is invented
    (a,) = advise(HOST, [granian(worker_rss=[])])
    assert a.workers_max_rss_mib is None
    assert a.recommended_limit == 48 * MiB  # the PSS rule alone
    (line,) = [s for s in a.advice if "workers-max-rss" in s]
    assert "under the limit 48.0MiB and above the workers' RSS peak" in line


def taskworker(**changes: object) -> Observed:
    """One `sentry run taskworker --concurrency=3`: children of 90 MiB (p99), the tree 400 MiB."""
    base = dict(program="taskworker", kind="taskworker", processes=1, children_per_process=3.0,
                worker_memory=[90 * MiB] * 99 + [100 * MiB], process_memory=[400 * MiB] * 100,
                cpu_cores=0.0, limit=256 * MiB, measure="pss", judges="each")
    return Observed(**{**base, **changes})  # type: ignore[arg-type]


def test_a_taskworkers_concurrency_is_what_the_hosts_memory_holds() -> None:
    small = Host(memory_total=4 * GiB, memory_available=500 * MiB, cpus=2)
    (a,) = advise(small, [taskworker()])
    # the budget: 400 MiB in use + 500 available - 10% of 4 GiB = 490.4 MiB; the tree takes
    # 400 at --concurrency 3, each child more 90 (p99): 3 + 90.4 / 90 = 4
    budget = 400 * MiB + 500 * MiB - SAFETY * 4 * GiB
    assert a.concurrency_fits == 3 + int((budget - 400 * MiB) // (90 * MiB)) == 4
    (line,) = [s for s in a.advice if "--concurrency" in s]
    assert line.startswith("3 children per taskworker, each up to 90.0MiB (p99): this host's "
                           "memory holds --concurrency 4 per taskworker with 10% kept free")
    assert "lower it" not in line
    assert "(self-hosted: higher values increase memory usage; more than 32 not recommended)" in line
    assert not any("Sentry's guide" in s for s in a.advice)  # the -c 4 line is Celery's


def test_a_taskworker_with_more_children_than_memory_holds_is_told_to_lower_it() -> None:
    tight = Host(memory_total=4 * GiB, memory_available=300 * MiB, cpus=2)
    (a,) = advise(tight, [taskworker()])
    # 290.4 MiB for a tree of 400: 109.6 MiB too much, 2 children of 90 fewer
    assert a.concurrency_fits == 1
    assert any("holds --concurrency 1 per taskworker with 10% kept free; lower it" in s
               for s in a.advice)
    (none,) = advise(Host(4 * GiB, 0, 2), [taskworker()])
    assert none.concurrency_fits == 0  # never below 0


def test_a_taskworker_above_self_hosteds_most_is_told_to_run_more_programs() -> None:
    many = SELF_HOSTED_MAX_CONCURRENCY * 2
    (a,) = advise(HOST, [taskworker(children_per_process=float(many))])
    assert any(s == f"--concurrency {many}: more taskworker programs at lower --concurrency "
               "rather than one above 32" for s in a.advice)
    (b,) = advise(HOST, [taskworker()])
    assert not any("more taskworker programs" in s for s in b.advice)


def test_the_legend_says_granians_limit_keeps_workers_max_rss_under_it() -> None:
    assert "workers-max-rss" not in render(HOST, advise(HOST, [worker()])).split("\n\n")[1]
    legend = render(HOST, advise(HOST, [granian()])).split("\n\n")[1]
    assert "(Granian's: and its workers-max-rss x 1.1)" in legend
