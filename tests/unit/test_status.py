"""/status and the status page: pure renderings of the Stats, served next to /metrics."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import make_wsgi_app

from listener.core import policy
from listener.core.model import ProcessInfo, Sample
from listener.core.policy import Verdict
from listener.core.rows import watched_rows
from listener.core.rules import Rules, Strategy
from listener.core.text import format_action
from listener.web import status
from listener.web.httpserver import HttpServer
from listener.web.metrics import make_registry
from listener.web.stats import Counter, Stats
from listener.web.view import StatusView, from_json, to_json

MiB = 1024**2
WEB = ProcessInfo("sentry-web", "web_00", 4242, "RUNNING", 0.0)
WORKER = ProcessInfo("sentry-worker", "worker_00", 4343, "RUNNING", 0.0)
RULES = Rules(any=100 * MiB, strategy=Strategy(measure="pss", children="each", child_signal=1,
                                               max_restarts=5))


def view(stats: Stats) -> StatusView:
    return StatusView.of(stats.snapshot(history=True))


def ticked(stats: Stats, memory: dict[ProcessInfo, int], now: float) -> None:
    samples = {p.namespec: Sample(m, "pss", 2, ()) for p, m in memory.items()}
    decision = policy.decide(list(memory), samples, RULES, policy.PolicyState(), now)
    stats.observe(watched_rows(decision.judgements, decision.state), now)
    stats.tick_done(now, 0.01)


@pytest.fixture
def stats() -> Stats:
    s = Stats(clock=lambda: 1010.0)
    ticked(s, {WEB: 50 * MiB, WORKER: 80 * MiB}, 1000.0)
    ticked(s, {WEB: 60 * MiB, WORKER: 150 * MiB}, 1005.0)
    s.count(WORKER.namespec, Counter.RESTARTS)
    s.supervisor_up(True)
    return s


def test_status_has_the_documented_fields_for_every_watched_process(stats: Stats) -> None:
    answer = json.loads(json.dumps(to_json(view(stats))))  # as /status serves it
    assert answer["supervisor_up"] is True and answer["last_tick"] == 1005.0
    web, worker = answer["processes"]
    assert {k: web[k] for k in ("group", "process", "pid", "memory_bytes", "limit_bytes",
                                "measure", "verdict", "restarts", "child_signals")} == {
        "group": "sentry-web", "process": "web_00", "pid": 4242, "memory_bytes": 60 * MiB,
        "limit_bytes": 100 * MiB, "measure": "pss", "verdict": "ok", "restarts": 0,
        "child_signals": 0}
    assert web["history"] == [[1000.0, 50 * MiB], [1005.0, 60 * MiB]]
    assert web["strategy"] == "pss, each, HUP" and web["budget_left"] == 5
    assert worker["verdict"] == "act" and worker["restarts"] == 1
    assert worker["last_action"] == {"kind": "restarts", "at": 1010.0}


def test_history_is_bounded() -> None:
    s = Stats()
    for i in range(500):
        ticked(s, {WEB: i * MiB}, float(i))
    (web,) = view(s).processes
    assert len(web.history) == 120 and web.history[-1] == (499.0, 499 * MiB)


def test_the_page_has_a_row_per_process_and_says_how_old_the_last_tick_is(stats: Stats) -> None:
    page = status.render_html(view(stats), now=1065.0)
    assert page.count('<tr class="process">') == 2
    assert "<span>sentry-worker:</span><wbr><span>worker_00</span>" in page
    assert "150.0MiB pss / 100.0MiB" in page
    assert "60s ago" in page and "restarted 55s ago" in page
    assert "<polyline" in page  # the sparkline
    assert "http://" not in page and "https://" not in page  # nothing from outside


def test_the_page_says_how_old_a_figure_read_at_the_slower_pace_is(stats: Stats) -> None:
    samples = {WEB.namespec: Sample(50 * MiB, "pss", 2, (), age=35.0),
               WORKER.namespec: Sample(60 * MiB, "pss", 2, ())}
    decision = policy.decide([WEB, WORKER], samples, RULES, policy.PolicyState(), 1000.0)
    stats.observe(watched_rows(decision.judgements, decision.state), 1000.0)
    page = status.render_html(view(stats), now=1000.0)
    assert page.count("read 35s ago") == 1
    answer = to_json(view(stats))["processes"]
    assert [p["memory_age_seconds"] for p in answer] == [35.0, 0.0]


def test_the_page_says_when_a_growing_figure_reaches_its_limit() -> None:
    stats = Stats()
    for i in range(60):  # 1 MiB a minute, 5 minutes of TICK_5: 40 MiB from the limit
        ticked(stats, {WEB: int(55 * MiB + i * 5 * MiB / 60), WORKER: 30 * MiB}, 1000.0 + 5 * i)
    page = status.render_html(view(stats), now=1300.0)
    assert page.count("limit in ~40m") == 1
    answer = {p["process"]: p for p in to_json(view(stats))["processes"]}
    assert answer["web_00"]["time_to_limit_seconds"] == pytest.approx(40 * 60, rel=0.05)
    assert answer["worker_00"]["time_to_limit_seconds"] is None  # flat


def test_names_are_escaped_in_the_page() -> None:
    s = Stats()
    ticked(s, {ProcessInfo("g<script>", "p&q", 1, "RUNNING", 0.0): 10 * MiB}, 1.0)
    page = status.render_html(view(s), now=2.0)
    assert "<script>" not in page and "<span>g&lt;script&gt;:</span><wbr><span>p&amp;q</span>" in page


@pytest.fixture
def server(stats: Stats) -> Iterator[HttpServer]:
    routes = status.app(stats, make_wsgi_app(make_registry(stats)), clock=lambda: 1065.0)
    srv = HttpServer(routes, "127.0.0.1", 0)
    yield srv
    srv.close()


def get(server: HttpServer, path: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10) as resp:
        return resp.headers["Content-Type"], resp.read()


def test_the_metrics_port_serves_the_page_the_json_and_the_metrics(server: HttpServer) -> None:
    kind, body = get(server, "/")
    assert kind.startswith("text/html") and b'<tr class="process">' in body
    kind, body = get(server, "/status")
    assert kind == "application/json" and len(json.loads(body)["processes"]) == 2
    kind, body = get(server, "/metrics")
    assert kind.startswith("text/plain") and b"memwatch_restarts_total" in body


def test_a_path_nobody_serves_is_still_the_metrics(server: HttpServer) -> None:
    # prometheus_client's app answers any path: scrapers set up with another path keep working
    kind, body = get(server, "/anything")
    assert kind.startswith("text/plain") and b"memwatch_build_info" in body


def test_a_verdict_is_styled_apart_from_the_memory_bar(stats: Stats) -> None:
    # the bar's "over" class paints a red block; a verdict "over (counting)" must not get it
    s = Stats()
    rules = Rules(any=100 * MiB, strategy=Strategy(consecutive=3))
    samples = {WEB.namespec: Sample(150 * MiB, "rss", 0, ())}
    decision = policy.decide([WEB], samples, rules, policy.PolicyState(), 1.0)
    s.observe(watched_rows(decision.judgements, decision.state), 1.0)
    page = status.render_html(view(s), now=2.0)
    assert '<td class="verdict v-over" title="over (counting)">over for 1 sample</td>' in page
    assert '<div class="over"' in page  # the bar


@pytest.mark.parametrize(("verdict", "samples", "said"), [
    (Verdict.OK, 0, "ok"),
    (Verdict.COUNTING, 1, "over for 1 sample"),
    (Verdict.COUNTING, 2, "over for 2 samples"),
    (Verdict.ACT, 3, "over for 3 samples: acting"),
    (Verdict.GRACE, 4, "over, in grace"),
    (Verdict.SUPPRESSED, 9, "over, budget spent"),
    (Verdict.DEFERRED, 2, "over, waiting its turn"),
    (Verdict.BUSY, 0, "restarting"),
    (Verdict.DRAINING, 0, "draining"),
    (Verdict.STOPPED, 0, "not running"),
])
def test_verdicts_read_as_words_without_doubled_parentheses(
        verdict: Verdict, samples: int, said: str) -> None:
    assert status.verdict_words(str(verdict), samples) == said


def test_every_verdict_reads_without_doubled_parentheses() -> None:
    for verdict in Verdict:
        for samples in (0, 1, 5):
            words = status.verdict_words(str(verdict), samples)
            assert words.count("(") <= 1 and words.count(")") <= 1, words


@pytest.mark.parametrize(("kind", "said"), [
    ("restarts", "restarted 9s ago"), ("child_signals", "worker signalled 9s ago"),
    ("child_signal_escalations", "escalated to a restart 9s ago"),
    ("dry_run_actions", "dry run: would act 9s ago"), ("oom_kills", "OOM-killed 9s ago"),
    ("something_newer", "something newer 9s ago"),  # a kind a newer listener sends
])
def test_the_last_action_is_said_in_the_past_tense(kind: str, said: str) -> None:
    assert format_action(kind, 9.4) == said


def test_the_bar_tells_one_and_a_half_times_the_limit_from_four_times() -> None:
    limit = 60 * MiB
    fills = [status.bar_fill(int(limit * r), limit) for r in (0.5, 1.0, 1.5, 2.0, 4.0, 8.0, 20)]
    assert fills == sorted(fills) and fills[1] == pytest.approx(2 / 3)
    assert fills[3] == pytest.approx(2 / 3 + 1 / 9) and fills[4] == pytest.approx(2 / 3 + 2 / 9)
    assert fills[5] == fills[6] == 1.0  # 8x and beyond: full
    # 103 MiB and 233 MiB of 60 MiB (the demo's workers): 120 px apart by at least 15 px
    wide = 120 * (status.bar_fill(233 * MiB, limit) - status.bar_fill(103 * MiB, limit))
    assert wide >= 15
    assert status.bar_fill(None, limit) == 0.0 and status.bar_fill(10, 0) == 0.0


def test_the_page_says_why_supervisord_is_unreachable_and_where_it_was_asked() -> None:
    s = Stats()
    page = status.render_html(view(s), now=10.0)
    assert '<b class="bad" id="supervisor" title="">not asked yet</b>' in page
    s.supervisor_up(False, "No such file or directory", "unix:///run/supervisor.sock")
    page = status.render_html(view(s), now=10.0)
    assert ('<p class="bad" id="supervisor-error">cannot reach supervisord at '
            'unix:///run/supervisor.sock: No such file or directory</p>') in page
    assert "no limit applies" not in page and "supervisord has not answered" in page
    answer = json.loads(status.render_json(view(s)))
    assert answer["supervisor_url"] == "unix:///run/supervisor.sock"
    assert answer["supervisor_error"] == "No such file or directory"
    assert from_json(answer).supervisor_error == "No such file or directory"
    s.supervisor_up(True, url="unix:///run/supervisor.sock")  # back: the error is gone
    page = status.render_html(view(s), now=10.0)
    assert "supervisor-error" not in page and ">reachable</b>" in page


def test_a_process_being_restarted_reads_restarting_with_its_rules_strategy() -> None:
    # its restart in flight: supervisord says STOPPING, then STOPPED with no pid, nothing sampled
    s = Stats()
    rules = Rules(any=100 * MiB, strategy=Strategy(measure="pss", children="auto"))
    for state, pid in (("STOPPING", 4242), ("STOPPED", 0), ("STARTING", 4250)):
        proc = ProcessInfo("sentry-web", "web_00", pid, state, 0.0)
        decision = policy.decide([proc], {}, rules, policy.PolicyState(), 1.0,
                                 busy=frozenset({proc.namespec}))
        s.observe(watched_rows(decision.judgements, decision.state), 1.0)
        (row,) = view(s).processes
        assert (row.verdict, row.strategy) == ("restarting", "pss, auto"), state
        assert ">restarting</td>" in status.render_html(view(s), now=2.0)


# --- rendering gives way to the event loop and is shared ---


def many(n: int) -> Stats:
    s = Stats()
    procs = {ProcessInfo("g", f"p{i:04d}", 1000 + i, "RUNNING", 0.0): 10 * MiB for i in range(n)}
    for t in range(5):
        ticked(s, procs, 1000.0 + 5 * t)
    return s


def test_the_json_built_in_chunks_is_json_dumps_of_the_view() -> None:
    v = view(many(45))
    paced: list[int] = []
    assert status.render_json(v, lambda: paced.append(1)) == json.dumps(to_json(v))
    assert len(paced) == 3  # every PACE_ROWS (20) processes
    empty = view(Stats())
    assert status.render_json(empty) == json.dumps(to_json(empty))


def test_a_rendering_waits_between_chunks_while_the_loop_handles_an_event() -> None:
    s = many(100)
    pages = status.Pages(s, clock=lambda: 2000.0, patience=60.0)
    chunks: list[int] = []
    s.loop_busy(True)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (pages.body("/status"), done.set()))
    thread.start()
    assert not done.wait(0.3)  # nothing built while the loop is busy
    s.loop_busy(False)
    assert done.wait(10)
    # between two chunks, the renderer looks at the loop again (here: stats.wait_loop_idle)
    original = s.wait_loop_idle
    s.wait_loop_idle = lambda patience: (chunks.append(1), original(patience))  # type: ignore[method-assign]
    s.count("g:p0000", Counter.RESTARTS)  # a change: rendered again
    pages.body("/status")
    assert len(chunks) >= 1 + 2 * 100 // 20  # before, and per chunk of snapshot and JSON


def test_a_tick_problem_said_after_a_rendering_is_served_at_once() -> None:
    s = many(1)
    pages = status.Pages(s, clock=lambda: 2000.0)
    assert json.loads(pages.body("/status"))["tick_problem"] == ""
    s.tick_problem("no TICK event within 65s")
    assert json.loads(pages.body("/status"))["tick_problem"] == "no TICK event within 65s"


def test_concurrent_clients_share_one_rendering_per_change() -> None:
    s = many(50)
    now = [2000.0]
    pages = status.Pages(s, clock=lambda: now[0])
    threads = [threading.Thread(target=pages.body, args=(path,)) for path in ["/status", "/"] * 20]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert pages.renderings == 2
    first = pages.body("/status")
    s.count("g:p0001", Counter.RESTARTS)
    assert json.loads(pages.body("/status"))["processes"][1]["restarts"] == 1 != json.loads(
        first)["processes"][1]["restarts"]
    # the page's ages move with the clock: rendered again after a second, changes or not
    before = pages.renderings
    pages.body("/")
    now[0] += 1.0
    pages.body("/")
    assert pages.renderings == before + 2
