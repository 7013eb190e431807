"""listener.web.stats + listener.web.metrics + listener.web.httpserver: the daemon's record, read back through
prometheus_client, and served over HTTP."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from listener import __version__
from listener.core import policy
from listener.core.model import SAMPLE_ERRORS, ProcessInfo, Sample, Unit
from listener.core.rows import ProcessRow, watched_rows
from listener.core.rules import Rules, Strategy
from listener.core.servers import Server
from listener.web.httpserver import HttpServer
from listener.web.metrics import make_registry
from listener.web.stats import TICK_BUCKETS, Counter, Stats

MiB = 1024**2
LIMIT = 100 * MiB

WEB = ProcessInfo("web", "web_00", 10, "RUNNING", 0.0)
WORKER = ProcessInfo("worker", "worker_00", 20, "RUNNING", 0.0)
SELF = ProcessInfo("memwatch", "memwatch", 30, "RUNNING", 0.0)
CRON = ProcessInfo("cron", "cron", 40, "RUNNING", 0.0)

PER_PROCESS_COUNTERS = [
    "memwatch_restarts_total",
    "memwatch_restart_failures_total",
    "memwatch_restarts_suppressed_total",
    "memwatch_child_signals_total",
    "memwatch_child_signal_escalations_total",
    "memwatch_dry_run_actions_total",
    "memwatch_oom_kills_total",
    "memwatch_forced_stops_total",
]


def labels(p: ProcessInfo) -> dict[str, str]:
    return {"group": p.group, "process": p.name}


def judgements(memory: dict[ProcessInfo, int | None], rules: Rules | None = None,
               **kwargs: frozenset) -> tuple[policy.Judgement, ...]:
    rules = rules or Rules(any=LIMIT, strategy=Strategy(consecutive=3))
    samples = {p.namespec: Sample(m, "pss", 2, ()) for p, m in memory.items() if m is not None}
    return policy.decide(list(memory), samples, rules, policy.PolicyState(), 1000.0, **kwargs).judgements


def tick(stats: Stats, judged: Iterable[policy.Judgement], finished: float, duration: float) -> None:
    """What the daemon does with a tick: observe the watched processes, count actions, then close it."""
    stats.observe(watched_rows(judged), finished)
    stats.tick_done(finished, duration)


def process_stats(stats: Stats, namespec: str) -> ProcessRow | None:
    by_name = {p.namespec: p for p in stats.snapshot().processes}
    return by_name.get(namespec)


@pytest.fixture
def stats() -> Stats:
    return Stats()


@pytest.fixture
def registry(stats: Stats) -> CollectorRegistry:
    return make_registry(stats)


def value(registry: CollectorRegistry, name: str, **label_values: str) -> float | None:
    return registry.get_sample_value(name, label_values)


# --- per-process series ---


def test_every_per_process_counter_is_exported_at_zero_from_the_first_tick(
        stats: Stats, registry: CollectorRegistry) -> None:
    tick(stats, judgements({WEB: 50 * MiB, WORKER: 150 * MiB}), finished=1000.0, duration=0.01)
    for p in (WEB, WORKER):
        for name in PER_PROCESS_COUNTERS:
            assert registry.get_sample_value(name, labels(p)) == 0.0, (name, p.namespec)


def test_per_process_gauges(stats: Stats, registry: CollectorRegistry) -> None:
    tick(stats, judgements({WEB: 50 * MiB, WORKER: 150 * MiB}), finished=1000.0, duration=0.01)
    assert value(registry, "memwatch_process_memory_bytes", measure="pss", **labels(WEB)) == 50 * MiB
    assert value(registry, "memwatch_process_memory_bytes", measure="pss", **labels(WORKER)) == 150 * MiB
    assert value(registry, "memwatch_process_memory_limit_bytes", **labels(WEB)) == LIMIT
    assert value(registry, "memwatch_process_over_limit_samples", **labels(WEB)) == 0
    assert value(registry, "memwatch_process_over_limit_samples", **labels(WORKER)) == 1
    assert value(registry, "memwatch_process_children", **labels(WEB)) == 2


def test_a_process_without_a_sample_has_no_memory_series_and_one_without_a_limit_no_series(
        stats: Stats, registry: CollectorRegistry) -> None:
    rules = Rules(groups=(("web", LIMIT),))
    tick(stats, judgements({WEB: None, WORKER: 10 * MiB}, rules), finished=1000.0, duration=0.01)
    assert value(registry, "memwatch_process_memory_bytes", measure="pss", **labels(WEB)) is None
    assert value(registry, "memwatch_process_memory_limit_bytes", **labels(WEB)) == LIMIT
    # counters are there all the same: an alert on restarts must see the first one
    assert value(registry, "memwatch_restarts_total", **labels(WEB)) == 0
    # not watched by this listener (no limit applies): no series at all, so that two listeners
    # on one host never export the same process twice
    assert value(registry, "memwatch_process_memory_limit_bytes", **labels(WORKER)) is None
    assert value(registry, "memwatch_process_memory_bytes", measure="pss", **labels(WORKER)) is None
    assert value(registry, "memwatch_restarts_total", **labels(WORKER)) is None


def test_stats_count_increments_the_processes_counter(stats: Stats, registry: CollectorRegistry) -> None:
    tick(stats, judgements({WEB: 50 * MiB, WORKER: 150 * MiB}), finished=1000.0, duration=0.01)
    stats.count(WORKER.namespec, Counter.RESTARTS)
    stats.count(WORKER.namespec, Counter.RESTARTS)
    stats.count(WORKER.namespec, Counter.RESTART_FAILURES, 3)
    stats.count(WEB.namespec, Counter.DRY_RUN_ACTIONS)
    assert value(registry, "memwatch_restarts_total", **labels(WORKER)) == 2
    assert value(registry, "memwatch_restart_failures_total", **labels(WORKER)) == 3
    assert value(registry, "memwatch_dry_run_actions_total", **labels(WEB)) == 1
    assert value(registry, "memwatch_restarts_total", **labels(WEB)) == 0


@pytest.mark.parametrize("counter", list(Counter))
def test_each_counter_has_its_metric(stats: Stats, registry: CollectorRegistry, counter: Counter) -> None:
    tick(stats, judgements({WEB: 50 * MiB}), finished=1000.0, duration=0.01)
    stats.count(WEB.namespec, counter)
    assert value(registry, f"memwatch_{counter.value}_total", **labels(WEB)) == 1
    assert getattr(process_stats(stats, WEB.namespec), counter.value) == 1


def test_the_counters_are_the_documented_per_process_counters() -> None:
    assert [f"memwatch_{c.value}_total" for c in Counter] == PER_PROCESS_COUNTERS


def test_an_action_counted_in_the_tick_a_process_is_first_seen_is_kept(
        stats: Stats, registry: CollectorRegistry) -> None:
    """The daemon counts a dry-run action (or a suppression) between observe() and tick_done()."""
    stats.observe(watched_rows(judgements({WEB: 150 * MiB})), 1000.0)
    stats.count(WEB.namespec, Counter.DRY_RUN_ACTIONS)
    stats.tick_done(1000.0, 0.01)
    assert value(registry, "memwatch_dry_run_actions_total", **labels(WEB)) == 1


def test_counters_survive_the_next_tick(stats: Stats, registry: CollectorRegistry) -> None:
    tick(stats, judgements({WEB: 150 * MiB}), finished=1000.0, duration=0.01)
    stats.count(WEB.namespec, Counter.RESTARTS)
    tick(stats, judgements({WEB: 50 * MiB}), finished=1005.0, duration=0.01)
    assert value(registry, "memwatch_restarts_total", **labels(WEB)) == 1
    assert value(registry, "memwatch_process_memory_bytes", measure="pss", **labels(WEB)) == 50 * MiB


def test_a_process_missing_from_the_next_tick_loses_all_its_series(
        stats: Stats, registry: CollectorRegistry) -> None:
    tick(stats, judgements({WEB: 50 * MiB, WORKER: 150 * MiB}), finished=1000.0, duration=0.01)
    stats.count(WORKER.namespec, Counter.RESTARTS)
    tick(stats, judgements({WEB: 50 * MiB}), finished=1005.0, duration=0.01)
    text = generate_latest(registry).decode()
    assert 'process="worker_00"' not in text
    assert 'process="web_00"' in text
    # and counting for it afterwards is a no-op, not a resurrection
    stats.count(WORKER.namespec, Counter.RESTARTS)
    assert process_stats(stats, WORKER.namespec) is None
    assert 'process="worker_00"' not in generate_latest(registry).decode()


def test_a_process_that_comes_back_starts_again_at_zero(stats: Stats, registry: CollectorRegistry) -> None:
    tick(stats, judgements({WORKER: 150 * MiB}), finished=1000.0, duration=0.01)
    stats.count(WORKER.namespec, Counter.RESTARTS)
    tick(stats, judgements({}), finished=1005.0, duration=0.01)
    tick(stats, judgements({WORKER: 150 * MiB}), finished=1010.0, duration=0.01)
    assert value(registry, "memwatch_restarts_total", **labels(WORKER)) == 0


def test_the_listener_itself_has_no_series(stats: Stats, registry: CollectorRegistry) -> None:
    tick(stats, judgements({SELF: 10 * MiB, WEB: 50 * MiB}, self_names=frozenset({SELF.namespec})),
               finished=1000.0, duration=0.01)
    assert 'process="memwatch"' not in generate_latest(registry).decode()
    assert value(registry, "memwatch_restarts_total", **labels(WEB)) == 0


# --- daemon-wide series ---


def test_events_and_sample_errors(stats: Stats, registry: CollectorRegistry) -> None:
    stats.event("TICK_5")
    stats.event("TICK_5")
    stats.event("malformed")
    stats.sample_errors({"vanished": 2, "access_denied": 1})
    stats.sample_errors({"vanished": 1})
    assert value(registry, "memwatch_events_total", event="TICK_5") == 2
    assert value(registry, "memwatch_events_total", event="malformed") == 1
    assert value(registry, "memwatch_sample_errors_total", reason="vanished") == 3
    assert value(registry, "memwatch_sample_errors_total", reason="access_denied") == 1
    assert value(registry, "memwatch_sample_errors_total", reason="zombie") == 0


def test_every_sample_error_reason_is_exported_at_zero_from_the_start(registry: CollectorRegistry) -> None:
    """So that increase() sees the first one: Prometheus cannot see a counter born at 1."""
    assert {"pid_reused", "unreadable"} <= set(SAMPLE_ERRORS)
    for reason in SAMPLE_ERRORS:
        assert value(registry, "memwatch_sample_errors_total", reason=reason) == 0, reason


def test_gauges_of_the_daemon(stats: Stats, registry: CollectorRegistry) -> None:
    assert value(registry, "memwatch_supervisor_up") == 0
    assert value(registry, "memwatch_last_tick_timestamp_seconds") == 0
    stats.supervisor_up(True)
    stats.stopped_not_running(2)
    stats.tick_done(finished=1700000000.5, duration=0.01)
    assert value(registry, "memwatch_supervisor_up") == 1
    assert value(registry, "memwatch_stopped_not_running") == 2
    assert value(registry, "memwatch_last_tick_timestamp_seconds") == 1700000000.5
    stats.supervisor_up(False)
    assert value(registry, "memwatch_supervisor_up") == 0


def test_build_info(registry: CollectorRegistry) -> None:
    assert value(registry, "memwatch_build_info", version=__version__) == 1


def test_tick_duration_histogram_buckets(stats: Stats, registry: CollectorRegistry) -> None:
    for duration in (0.0005, 0.001, 0.003, 0.003, 0.2, 7.0, 60.0):
        stats.tick_done(finished=1000.0, duration=duration)
    name = "memwatch_tick_duration_seconds"

    def bucket(le: str) -> float | None:
        return value(registry, f"{name}_bucket", le=le)

    assert bucket("0.001") == 2  # a bound is inclusive (le): 0.001 counts in le="0.001"
    assert bucket("0.0025") == 2
    assert bucket("0.005") == 4
    assert bucket("0.1") == 4
    assert bucket("0.25") == 5
    assert bucket("5.0") == 5
    assert bucket("10.0") == 6
    assert bucket("+Inf") == 7
    assert value(registry, f"{name}_count") == 7
    assert value(registry, f"{name}_sum") == pytest.approx(0.0005 + 0.001 + 0.003 + 0.003 + 0.2 + 7 + 60)


def test_histogram_buckets_are_cumulative_and_complete(stats: Stats) -> None:
    for i in range(50):
        stats.tick_done(finished=1000.0, duration=i * 0.3)
    snap = stats.snapshot()
    assert len(snap.tick_buckets) == len(TICK_BUCKETS) + 1
    assert list(snap.tick_buckets) == sorted(snap.tick_buckets)
    assert snap.tick_buckets[-1] == 50


# --- exposition ---


def test_exposition_text_parses_and_holds_every_documented_family(stats: Stats,
                                                                  registry: CollectorRegistry) -> None:
    tick(stats, judgements({WEB: 50 * MiB, WORKER: 150 * MiB}), finished=1000.0, duration=0.01)
    stats.count(WORKER.namespec, Counter.RESTARTS)
    stats.event("TICK_5")
    stats.sample_errors({"vanished": 1})
    stats.supervisor_up(True)
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    documented = {
        "memwatch_process_memory_bytes": "gauge",
        "memwatch_process_memory_limit_bytes": "gauge",
        "memwatch_process_over_limit_samples": "gauge",
        "memwatch_process_children": "gauge",
        "memwatch_restarts": "counter",
        "memwatch_restart_failures": "counter",
        "memwatch_restarts_suppressed": "counter",
        "memwatch_child_signals": "counter",
        "memwatch_dry_run_actions": "counter",
        "memwatch_events": "counter",
        "memwatch_tick_duration_seconds": "histogram",
        "memwatch_last_tick_timestamp_seconds": "gauge",
        "memwatch_supervisor_up": "gauge",
        "memwatch_stopped_not_running": "gauge",
        "memwatch_sample_errors": "counter",
        "memwatch_build_info": "gauge",
    }
    assert {n: families[n].type for n in documented} == documented
    for family in families.values():
        # the listener's own process_* (see test_the_listener_reports_its_own_process) and ours
        assert family.name.startswith(("memwatch_", "process_"))
        assert family.documentation
    restarts = {(s.labels["group"], s.labels["process"]): s.value
                for s in families["memwatch_restarts"].samples}
    assert restarts == {("web", "web_00"): 0.0, ("worker", "worker_00"): 1.0}


def test_exposition_of_an_empty_daemon_parses(registry: CollectorRegistry) -> None:
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert any(f.name == "memwatch_build_info" for f in families)


def test_label_values_are_escaped(stats: Stats, registry: CollectorRegistry) -> None:
    odd = ProcessInfo('we"b', "web\\00\n", 11, "RUNNING", 0.0)
    tick(stats, judgements({odd: 50 * MiB}), finished=1000.0, duration=0.01)
    text = generate_latest(registry).decode()
    parsed = [s for f in text_string_to_metric_families(text) if f.name == "memwatch_restarts"
              for s in f.samples]
    assert [(s.labels["group"], s.labels["process"]) for s in parsed] == [('we"b', "web\\00\n")]


def test_the_registry_is_private(stats: Stats) -> None:
    from prometheus_client import REGISTRY

    # the global registry holds prometheus_client's own ProcessCollector: a second one there
    # would raise "Duplicated timeseries"
    make_registry(stats)
    make_registry(stats)
    assert REGISTRY.get_sample_value("memwatch_build_info", {"version": __version__}) is None


def rss_of_this_process() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_the_listener_reports_its_own_process(registry: CollectorRegistry) -> None:
    # the watchdog's own memory, CPU and descriptors, for the MemwatchListenerMemoryHigh alert
    rss = value(registry, "process_resident_memory_bytes")
    assert rss is not None and abs(rss - rss_of_this_process()) < 16 * MiB
    open_fds = value(registry, "process_open_fds")
    # listdir holds one descriptor of its own; another test's thread may hold one more
    assert open_fds is not None and abs(open_fds - len(os.listdir("/proc/self/fd"))) <= 1
    assert (value(registry, "process_max_fds") or 0) >= open_fds
    cpu = value(registry, "process_cpu_seconds_total")
    assert cpu is not None and 0 < cpu <= time.process_time() + 1
    started = value(registry, "process_start_time_seconds")
    assert started is not None and started <= time.time()


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_lists_every_exported_metric(registry: CollectorRegistry) -> None:
    section = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = {re.sub(r"\{.*", "", name) for name in re.findall(r"^\| `([^`]+)`", section, re.M)}
    # prometheus_client names a counter's family without its _total
    exported = {m.name + ("_total" if m.type == "counter" else "") for m in registry.collect()}
    assert documented == exported


def test_the_listeners_memory_is_read_at_each_scrape(registry: CollectorRegistry) -> None:
    before = value(registry, "process_resident_memory_bytes") or 0.0
    ballast = bytearray(64 * MiB)  # zero-filled: resident once written
    try:
        assert (value(registry, "process_resident_memory_bytes") or 0.0) >= before + 48 * MiB
    finally:
        del ballast


def test_snapshot_is_a_copy(stats: Stats) -> None:
    stats.event("TICK_5")
    snap = stats.snapshot()
    snap.events["TICK_5"] = 99
    assert stats.snapshot().events == {"TICK_5": 1, "malformed": 0}


def test_concurrent_counting_loses_nothing(stats: Stats) -> None:
    tick(stats, judgements({WEB: 50 * MiB}), finished=1000.0, duration=0.01)

    def work() -> None:
        for _ in range(500):
            stats.count(WEB.namespec, Counter.RESTARTS)
            stats.event("TICK_5")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    web = process_stats(stats, WEB.namespec)
    assert web is not None and web.restarts == 2000
    assert stats.snapshot().events["TICK_5"] == 2000


# --- over HTTP: prometheus_client's WSGI app on listener.web.httpserver ---

DEADLINE = 5.0  # seconds any wait below may take before the test fails


@pytest.fixture
def served() -> Iterator[tuple[Stats, HttpServer]]:
    stats = Stats()
    server = HttpServer(make_wsgi_app(make_registry(stats)), "127.0.0.1", 0)
    yield stats, server
    server.close()


def get(port: int, path: str = "/metrics", accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=DEADLINE) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def ours(text: str) -> list[str]:
    """The exposition's lines without the process_* families (they change at every read)."""
    return [line for line in text.splitlines()
            if not line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith("process_")]


def test_metrics_over_http(served: tuple[Stats, HttpServer]) -> None:
    stats, server = served
    tick(stats, judgements({WEB: 50 * MiB, WORKER: 150 * MiB}), finished=1000.0, duration=0.01)
    stats.count(WORKER.namespec, Counter.RESTARTS)
    status, content_type, text = get(server.port)
    assert status == 200
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    restarts = {(s.labels["group"], s.labels["process"]): s.value
                for s in families["memwatch_restarts"].samples}
    assert restarts == {("web", "web_00"): 0.0, ("worker", "worker_00"): 1.0}
    memory = {s.labels["process"]: s.value for s in families["memwatch_process_memory_bytes"].samples}
    assert memory == {"web_00": 50 * MiB, "worker_00": 150 * MiB}
    # what prometheus_client encodes; the listener's own CPU and memory move between the two
    assert ours(text) == ours(generate_latest(make_registry(stats)).decode())


def test_metrics_over_http_follow_the_stats(served: tuple[Stats, HttpServer]) -> None:
    stats, server = served
    assert 'process="web_00"' not in get(server.port)[2]
    tick(stats, judgements({WEB: 50 * MiB}), finished=1000.0, duration=0.01)
    assert 'process="web_00"' in get(server.port)[2]


def test_metrics_over_http_in_openmetrics_when_asked(served: tuple[Stats, HttpServer]) -> None:
    stats, server = served
    tick(stats, judgements({WEB: 50 * MiB}), finished=1000.0, duration=0.01)
    status, content_type, text = get(server.port, accept="application/openmetrics-text; version=1.0.0")
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


def still_open(sock: socket.socket) -> bool:
    """The server has not closed the connection: nothing to read, no end of file."""
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.settimeout(timeout)


def closed_by_server(sock: socket.socket) -> bool:
    """Wait (up to DEADLINE) for the server to close a connection we send nothing on."""
    sock.settimeout(DEADLINE)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_idle_connections_give_way_to_a_scrape(stats: Stats) -> None:
    """Silent clients hold descriptors, never the port: at the cap the oldest idle connection is
    closed for the newcomer, and the scrape is answered at once, long before any timeout."""
    server = HttpServer(make_wsgi_app(make_registry(stats)), "127.0.0.1", 0, max_open=2,
                        timeout=60)
    address = ("127.0.0.1", server.port)
    idle = [socket.create_connection(address, timeout=DEADLINE) for _ in range(2)]
    try:
        assert all(still_open(sock) for sock in idle)
        status, _, text = get(server.port)
        assert status == 200
        assert any(f.name == "memwatch_build_info" for f in text_string_to_metric_families(text))
        # the oldest gave way; the younger one is still held
        assert closed_by_server(idle[0])
        assert still_open(idle[1])
    finally:
        for sock in idle:
            sock.close()
        server.close()


def test_a_request_has_a_whole_deadline_whatever_it_trickles(stats: Stats) -> None:
    """A client sending a byte now and then is closed at the whole-request deadline, not kept
    alive by each byte."""
    server = HttpServer(make_wsgi_app(make_registry(stats)), "127.0.0.1", 0, timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as sock:
            began = time.monotonic()
            for byte in b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 1000:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:  # reset: the server closed it
                    break
                if not still_open(sock):
                    break
                time.sleep(0.05)  # the client's own pace
            else:
                pytest.fail("a trickling client was never closed")
            assert time.monotonic() - began < 0.5 + 1.0
    finally:
        server.close()


# --- a scrape gives way to the event loop ---


def scrape_in_thread(registry: CollectorRegistry) -> tuple[threading.Thread, list[bytes]]:
    body: list[bytes] = []
    thread = threading.Thread(target=lambda: body.append(generate_latest(registry)))
    thread.start()
    return thread, body


def test_a_scrape_waits_while_the_loop_handles_an_event_and_finishes_once_it_is_idle(
        stats: Stats) -> None:
    tick(stats, judgements({WEB: 50 * MiB}), finished=1000.0, duration=0.01)
    registry = make_registry(stats, patience=60.0)
    stats.loop_busy(True)
    thread, body = scrape_in_thread(registry)
    thread.join(0.3)
    assert thread.is_alive() and body == []  # encoding nothing while the loop is busy
    stats.loop_busy(False)
    thread.join(10)
    assert not thread.is_alive() and b"memwatch_restarts_total" in body[0]


def test_a_loop_busy_for_long_delays_a_scrape_by_its_patience_at_most(stats: Stats) -> None:
    tick(stats, judgements({WEB: 50 * MiB}), finished=1000.0, duration=0.01)
    stats.loop_busy(True)  # e.g. a tick waiting for a hung supervisord
    thread, body = scrape_in_thread(make_registry(stats, patience=0.5))
    thread.join(4)  # the patience is for the whole scrape, not each of its ~16 families
    assert not thread.is_alive() and b"memwatch_supervisor_up" in body[0]


def test_the_memory_figure_names_the_pid_it_is_of(stats: Stats, registry: CollectorRegistry) -> None:
    """The largest worker's with children each/auto, the supervised pid's alone, none for a sum."""
    workers = (Unit(WEB.pid, 20 * MiB, 0.0), Unit(11, 150 * MiB, 0.0), Unit(12, 30 * MiB, 0.0))
    samples = {WEB.namespec: Sample(150 * MiB, "pss", 2, workers, Server.UWSGI),
               WORKER.namespec: Sample(90 * MiB, "pss", 3, ()),
               CRON.namespec: Sample(40 * MiB, "pss", 0, ())}
    rules = Rules(any=LIMIT, strategy=Strategy(measure="pss", children="auto", consecutive=3))
    decision = policy.decide([WEB, WORKER, CRON], samples, rules, policy.PolicyState(), 1000.0)
    tick(stats, decision.judgements, finished=1000.0, duration=0.01)
    assert value(registry, "memwatch_process_memory_pid", **labels(WEB)) == 11
    assert value(registry, "memwatch_process_memory_pid", **labels(WORKER)) is None
    assert value(registry, "memwatch_process_memory_pid", **labels(CRON)) == CRON.pid


def test_cpu_seconds_is_a_counter_that_only_resets_with_a_new_pid(stats: Stats,
                                                                   registry: CollectorRegistry) -> None:
    def row(pid: int, cpu: float | None) -> ProcessRow:
        return ProcessRow("web", "web_00", 10 * MiB, "pss", LIMIT, 0, 0, pid=pid, cpu_seconds=cpu)

    def cpu() -> float | None:
        return value(registry, "memwatch_process_cpu_seconds_total", **labels(WEB))

    for pid, seconds, expected in ((10, 5.0, 5.0), (10, 7.5, 7.5),
                                   (10, 7.0, 7.5),  # a child orphaned out of the tree: held
                                   (10, None, 7.5),  # no sample this tick: held
                                   (11, 0.5, 0.5)):  # restarted: a new process, a reset
        stats.observe([row(pid, seconds)], 1000.0)
        assert cpu() == expected
