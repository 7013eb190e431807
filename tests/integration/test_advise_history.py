"""History mode of `advise` end to end: a real Prometheus (1 s scrapes) stores the series of a
real listener (PSS, each process of a tree judged on its own) watching a real supervisord that
runs stand-ins allocating known memory (a flat one, and a master with two children) and one that
spins on a CPU. Then listener.tools.history reads those series back over Prometheus's HTTP API and
must find what the stand-ins allocated, and one core for the spinner. It must also refuse, in
one line, an address that is not Prometheus's (the listener's own /metrics port) and a
Prometheus that holds no memwatch series.
"""

from __future__ import annotations

import json
import math
import shutil
import textwrap
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from listener.tools.advice import Host, Observed, Percentiles, advise
from listener.tools.history import HistoryError, observe_history
from tests.harness import PY, ListenerProcess, Supervisord, hog, program, short_dir

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

MiB = 1024**2
WINDOW = 300.0  # 5m
LIMIT_MB = 400
FLAT_MB = 120
CHILD_MB = 40
CHILDREN = 2
SCRAPES = 5  # stored samples of each program before reading the history
TREE = "memwatch_process_tree_memory_bytes"
PROGRAMS = {"flat", "tree", "spin"}


@dataclass
class Prometheus:
    proc: Any
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            answer = json.load(resp)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as resp:
            return bool(resp.status == 200)


def start_prometheus(root: Path, targets: list[str]) -> Prometheus:
    """A real Prometheus in `root` scraping `targets` every second (none: it scrapes nothing)."""
    binary = h.require_binary("prometheus", "apt-get install prometheus")
    scrape = textwrap.dedent(f"""\
        scrape_configs:
          - job_name: memwatch
            static_configs:
              - targets: {json.dumps(targets)}
        """) if targets else "scrape_configs: []\n"
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n" + scrape)
    port, log = h.free_port(), root / "prometheus.log"
    proc = h.start([binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}"], log, cwd=root)
    prometheus = Prometheus(proc, port, log)
    try:
        h.wait_for(prometheus.ready, what="Prometheus to be ready", proc=proc, log=log)
    except BaseException:
        h.stop(proc)
        raise
    return prometheus


@dataclass
class Watched:
    prometheus: Prometheus
    listener: ListenerProcess
    observed: dict[str, Observed]


def children_allocated(sv: Supervisord) -> bool:
    """The tree's children have touched their memory (the master's RSS alone does not say)."""
    kids = psutil.Process(sv.pid("tree:tree")).children()
    return len(kids) == CHILDREN and all(k.memory_info().rss >= CHILD_MB * MiB for k in kids)


@pytest.fixture(scope="module")
def watched() -> Iterator[Watched]:
    h.require_binary("prometheus", "apt-get install prometheus")
    root = short_dir("mwh-")
    sv = listener = prometheus = None
    try:
        sv = Supervisord(program("flat", hog("--mb", FLAT_MB))
                         + program("tree", hog("--children", CHILDREN, "--child-mb", CHILD_MB))
                         + program("spin", f'{PY} -c "while True: pass"'), root)
        sv.wait_allocated({"flat:flat": FLAT_MB})
        h.wait_for(lambda: children_allocated(sv), what="the tree's children to allocate")
        listener = ListenerProcess(["-a", f"{LIMIT_MB}MB", "--measure", "pss", "--children", "each"],
                                   sv.url, root)
        prometheus = start_prometheus(root, [f"127.0.0.1:{listener.metrics_port}"])
        stored = prometheus

        def scraped() -> bool:
            # the listener has series only once it has ticked: tick it while Prometheus scrapes
            assert listener is not None
            listener.tick()
            counts = {r["metric"]["group"]: float(r["value"][1])
                      for r in stored.query(f"count_over_time({TREE}[5m])")}
            return counts.keys() == PROGRAMS and min(counts.values()) >= SCRAPES

        h.wait_for(scraped, what=f"Prometheus to store {SCRAPES} scrapes of each program", timeout=60,
                   proc=prometheus.proc, log=prometheus.log)
        observed = {o.program: o for o in observe_history(prometheus.url, WINDOW)}
        yield Watched(prometheus, listener, observed)
    finally:
        if prometheus is not None:
            h.stop(prometheus.proc)
        if listener is not None:
            listener.close()
        if sv is not None:
            sv.stop()
        shutil.rmtree(root, ignore_errors=True)


def within(value: float, expected: float, share: float) -> bool:
    return abs(value - expected) <= share * expected


def test_each_program_is_observed_as_the_listener_watches_it(watched: Watched) -> None:
    flat, tree = watched.observed["flat"], watched.observed["tree"]
    assert watched.observed.keys() == PROGRAMS
    for seen in watched.observed.values():
        assert (seen.kind, seen.processes, seen.measure) == ("unknown", 1, "pss")
        assert seen.limit == LIMIT_MB * MiB  # the listener's -a 400MB
        assert len(seen.process_memory) >= SCRAPES
    assert (flat.children_per_process, tree.children_per_process) == (0.0, CHILDREN)
    assert (flat.judges, tree.judges) == (None, "each")


def test_a_flat_process_reads_as_the_memory_it_allocated(watched: Watched) -> None:
    flat = watched.observed["flat"]
    p = Percentiles.of(flat.process_memory)
    assert p is not None and within(p.p99, FLAT_MB * MiB, 0.15), p
    assert flat.worker_memory == []  # one process, no tree: nothing judged per worker


def test_a_tree_judged_per_process_gives_its_largest_worker(watched: Watched) -> None:
    tree = watched.observed["tree"]
    workers = Percentiles.of(tree.worker_memory)
    assert workers is not None and within(workers.p99, CHILD_MB * MiB, 0.15), workers
    whole = Percentiles.of(tree.process_memory)
    # the tree's figure holds both children and the master
    assert whole is not None and whole.p99 >= CHILDREN * CHILD_MB * MiB > workers.max, whole


def test_cpu_is_the_mean_use_in_cores(watched: Watched) -> None:
    for seen in watched.observed.values():
        assert math.isfinite(seen.cpu_cores) and seen.cpu_cores >= 0, seen
    # one busy loop is at most one core, and far more than the others (what the shared machine
    # gives it varies: 0.25-1.0 seen here under parallel test runs)
    assert 0.1 <= watched.observed["spin"].cpu_cores <= 1.2, watched.observed["spin"]
    assert watched.observed["flat"].cpu_cores < 0.1 and watched.observed["tree"].cpu_cores < 0.1


def test_the_advice_core_takes_the_observations(watched: Watched) -> None:
    host = Host(memory_total=16 * 1024 * MiB, memory_available=12 * 1024 * MiB, cpus=4)
    advice = {a.program: a for a in advise(host, list(watched.observed.values()))}
    flat = advice["flat"]
    assert flat.process_memory is not None and flat.recommended_limit is not None
    assert flat.recommended_limit >= flat.process_memory.p99 * 1.3


def test_the_instance_can_be_named_and_a_wrong_one_is_refused(watched: Watched) -> None:
    instance = f"127.0.0.1:{watched.listener.metrics_port}"
    named = observe_history(watched.prometheus.url, WINDOW, instance=instance)
    assert {o.program for o in named} == PROGRAMS
    with pytest.raises(HistoryError) as caught:
        observe_history(watched.prometheus.url, WINDOW, instance="elsewhere:9870")
    message = str(caught.value)
    assert "\n" not in message and 'instance="elsewhere:9870"' in message, message
    assert instance in message, message  # the one that is there


def test_the_listeners_own_port_is_not_prometheus(watched: Watched) -> None:
    url = f"http://127.0.0.1:{watched.listener.metrics_port}"
    with pytest.raises(HistoryError) as caught:
        observe_history(url, WINDOW)
    message = str(caught.value)
    assert "\n" not in message and url in message and "not JSON" in message, message


def test_a_prometheus_without_memwatch_series_has_no_samples_yet() -> None:
    root = short_dir("mwh-")
    prometheus = start_prometheus(root, [])
    try:
        with pytest.raises(HistoryError) as caught:
            observe_history(prometheus.url, WINDOW)
    finally:
        h.stop(prometheus.proc)
        shutil.rmtree(root, ignore_errors=True)
    message = str(caught.value)
    assert message == (f"no samples yet: Prometheus at {prometheus.url} has no {TREE} series in "
                       "the last 5m; is it scraping the listener?")
