"""listener.tools.history against a tiny local HTTP server that answers as Prometheus's query API does
(the JSON shapes of its documentation: a status/data envelope; vector results with `value`,
matrix results with `values`, samples as strings; errors as status "error" with errorType and
error under HTTP 400/422/503): what each program's observation is made of, and a one-line
HistoryError for everything that is not a usable answer."""

from __future__ import annotations

import json
import math
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from listener.tools.history import HistoryError, observe_history
from tests.harness import free_port

Answer = tuple[int, str, bytes]  # HTTP status, content type, body
Respond = Callable[[str, dict[str, str]], Answer]

NOW = 1_700_000_000.0
HOUR = 3600.0
WEEK = 7 * 86400.0
INSTANCE = "host:9870"
MiB = 1024**2
TREE = "memwatch_process_tree_memory_bytes"
MEMORY = "memwatch_process_memory_bytes"


class FakePrometheus:
    """An HTTP server in a thread on a free port; every GET is recorded, then answered."""

    def __init__(self, respond: Respond) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.authorization: list[str | None] = []
        seen, authorization = self.requests, self.authorization

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                parts = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(parts.query))
                seen.append((parts.path, params))
                authorization.append(self.headers.get("Authorization"))
                status, kind, body = respond(parts.path, params)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # a short poll: shutdown() waits for it
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                         daemon=True).start()

    def queries(self, path: str = "/api/v1/query") -> list[dict[str, str]]:
        return [params for p, params in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], FakePrometheus]]:
    started: list[FakePrometheus] = []

    def start(respond: Respond) -> FakePrometheus:
        started.append(FakePrometheus(respond))
        return started[-1]

    yield start
    for fake in started:
        fake.close()


# --- answers, in the shapes of Prometheus's documentation ---


def success(kind: str, result: Any) -> Answer:
    body = {"status": "success", "data": {"resultType": kind, "result": result}}
    return 200, "application/json", json.dumps(body).encode()


def failure(status: int, error_type: str, error: str) -> Answer:
    body = {"status": "error", "errorType": error_type, "error": error}
    return status, "application/json", json.dumps(body).encode()


def labels(group: str, process: str, **more: str) -> dict[str, str]:
    return {"group": group, "process": process, "instance": INSTANCE, "job": "memwatch", **more}


def now_sample(name: str, metric: dict[str, str], value: float) -> dict[str, Any]:
    return {"metric": {"__name__": name, **metric}, "value": [NOW, str(value)]}


def series(metric: dict[str, str], points: list[tuple[float, float | str]]) -> dict[str, Any]:
    return {"metric": metric, "values": [[t, str(v)] for t, v in points]}


class Canned:
    """Answers each query of listener.tools.history from canned results (an empty Prometheus by
    default); anything else is Prometheus's own answer to a bad query."""

    def __init__(self) -> None:
        self.instances: list[dict[str, Any]] = []
        self.now: list[dict[str, Any]] = []
        self.tree: list[dict[str, Any]] = []
        self.memory: list[dict[str, Any]] = []
        self.cpu: list[dict[str, Any]] = []

    def __call__(self, path: str, params: dict[str, str]) -> Answer:
        query = params.get("query", "")
        if path.endswith("/query_range"):
            return success("matrix", self.tree if TREE in query else self.memory)
        if query == "time()":
            return success("scalar", [NOW, str(NOW)])
        if query.startswith("count by (instance)"):
            return success("vector", self.instances)
        if query.startswith("sum by (group) (increase("):
            return success("vector", self.cpu)
        if query.startswith('{__name__=~"'):
            return success("vector", self.now)
        return failure(400, "bad_data", f"unexpected query {query!r}")


def watched_host() -> Canned:
    """One listener: `web` (two processes, PSS, each worker judged, a reload from RSS earlier in
    the window), `cron` (one process, RSS, judged alone) and `gone` (seen in the window only)."""
    c = Canned()
    c.instances = [{"metric": {"instance": INSTANCE}, "value": [NOW, "3"]}]
    web0, web1, cron = labels("web", "web_00"), labels("web", "web_01"), labels("cron", "cron")
    c.now = [
        now_sample(TREE, {**web0, "measure": "pss"}, 300 * MiB),
        now_sample(TREE, {**web1, "measure": "pss"}, 200 * MiB),
        now_sample(TREE, {**cron, "measure": "rss"}, 50 * MiB),
        now_sample(MEMORY, {**web0, "measure": "pss"}, 100 * MiB),
        now_sample(MEMORY, {**web1, "measure": "pss"}, 90 * MiB),
        now_sample(MEMORY, {**cron, "measure": "rss"}, 50 * MiB),
        now_sample("memwatch_process_children", web0, 4),
        now_sample("memwatch_process_children", web1, 2),
        now_sample("memwatch_process_children", cron, 0),
        now_sample("memwatch_process_memory_limit_bytes", web0, 700 * MiB),
        now_sample("memwatch_process_memory_limit_bytes", web1, 800 * MiB),
    ]
    start = NOW - HOUR
    c.tree = [
        series({**web0, "measure": "rss"}, [(start, 900 * MiB)]),  # before the reload: left out
        series({**web0, "measure": "pss"}, [(NOW - 20, 280 * MiB), (NOW - 10, "NaN"),
                                            (NOW, 300 * MiB)]),
        series({**web1, "measure": "pss"}, [(NOW - 10, 200 * MiB), (NOW, 200 * MiB)]),
        series({**cron, "measure": "rss"}, [(NOW - 600, 40 * MiB), (NOW, 50 * MiB)]),
        series(labels("gone", "gone", measure="rss"), [(start, 10 * MiB)]),
    ]
    c.memory = [
        series({**web0, "measure": "pss"}, [(NOW - 20, 95 * MiB), (NOW, 100 * MiB)]),
        # at NOW the tree held a single process: its figure is the tree's, no worker's
        series({**web1, "measure": "pss"}, [(NOW - 10, 90 * MiB), (NOW, 200 * MiB)]),
        series({**cron, "measure": "rss"}, [(NOW - 600, 40 * MiB), (NOW, 50 * MiB)]),
    ]
    c.cpu = [{"metric": {"group": "web"}, "value": [NOW, "360"]},
             {"metric": {"group": "cron"}, "value": [NOW, "6"]}]
    return c


def history_error(url: str, **kwargs: Any) -> str:
    """The message of the HistoryError observe_history raises: one line, naming the URL."""
    with pytest.raises(HistoryError) as caught:
        observe_history(url, kwargs.pop("window", WEEK), **kwargs)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


# --- what each program's observation is made of ---


def test_each_program_running_now_is_observed(serve: Callable[[Respond], FakePrometheus]) -> None:
    fake = serve(watched_host())
    observed = observe_history(fake.url, HOUR)
    assert [o.program for o in observed] == ["cron", "web"]  # `gone` no longer runs
    cron, web = observed
    assert (web.kind, web.processes, web.children_per_process) == ("unknown", 2, 3.0)
    assert (web.limit, web.measure, web.judges) == (800 * MiB, "pss", "each")
    assert (cron.kind, cron.processes, cron.children_per_process) == ("unknown", 1, 0.0)
    assert (cron.limit, cron.measure, cron.judges) == (None, "rss", None)


def test_process_memory_is_every_sample_in_the_measure_of_now(
        serve: Callable[[Respond], FakePrometheus]) -> None:
    web = observe_history(serve(watched_host()).url, HOUR)[1]
    # web_00's RSS samples from before the reload and its NaN point are left out
    assert sorted(web.process_memory) == [200 * MiB, 200 * MiB, 280 * MiB, 300 * MiB]


def test_worker_memory_is_the_figure_where_it_is_below_the_tree(
        serve: Callable[[Respond], FakePrometheus]) -> None:
    cron, web = observe_history(serve(watched_host()).url, HOUR)
    assert sorted(web.worker_memory) == [90 * MiB, 95 * MiB, 100 * MiB]
    assert cron.worker_memory == []  # the figure is the whole process's


def test_workers_rss_is_known_only_from_series_in_rss(
        serve: Callable[[Respond], FakePrometheus]) -> None:
    web = observe_history(serve(watched_host()).url, HOUR)[1]
    assert list(web.worker_rss) == []  # PSS series say nothing of RSS (Granian compares RSS)
    in_rss = watched_host()
    for s in (*in_rss.now, *in_rss.tree, *in_rss.memory):
        if s["metric"].get("measure") == "pss":
            s["metric"]["measure"] = "rss"
    web = observe_history(serve(in_rss).url, HOUR)[1]
    assert sorted(web.worker_rss) == sorted(web.worker_memory) == [90 * MiB, 95 * MiB, 100 * MiB]


def test_cpu_is_the_mean_over_the_time_the_program_was_observed(
        serve: Callable[[Respond], FakePrometheus]) -> None:
    cron, web = observe_history(serve(watched_host()).url, HOUR)
    step = 3.6  # an hour in 1000 points
    # web was seen through the whole window (web_00's RSS series from its start)
    assert math.isclose(web.cpu_cores, 360 / HOUR)
    # cron only from 600 s ago: its mean is over that time, not the hour
    assert math.isclose(cron.cpu_cores, 6 / (600 + step))


def test_the_queries_read_one_instance_at_prometheus_time(
        serve: Callable[[Respond], FakePrometheus]) -> None:
    fake = serve(watched_host())
    observe_history(fake.url, WEEK, timeout=5)
    instant = fake.queries()
    assert instant[0]["query"] == "time()"
    assert instant[1]["query"] == f"count by (instance) (count_over_time({TREE}[604800s]))"
    assert all(q["time"] == f"{NOW:.3f}" for q in instant[1:])
    assert 'instance="host:9870"' in instant[2]["query"]
    assert instant[3]["query"] == ('sum by (group) (increase(memwatch_process_cpu_seconds_total'
                                   '{instance="host:9870"}[604800s]))')
    ranged = fake.queries("/api/v1/query_range")
    # a week in 1000 steps of 604.8 s, each point the largest sample of its step
    assert [q["query"] for q in ranged] == [
        f'max_over_time({TREE}{{instance="host:9870"}}[604800ms])',
        f'max_over_time({MEMORY}{{instance="host:9870"}}[604800ms])']
    for q in ranged:
        assert (q["start"], q["end"], q["step"]) == (f"{NOW - WEEK:.3f}", f"{NOW:.3f}", "604800ms")
    assert {q["timeout"] for _, q in fake.requests} == {"5s"}


def test_a_short_window_steps_one_second(serve: Callable[[Respond], FakePrometheus]) -> None:
    fake = serve(watched_host())
    observe_history(fake.url, 300)
    assert {q["step"] for q in fake.queries("/api/v1/query_range")} == {"1s"}


def test_a_path_prefix_and_a_trailing_slash_are_kept(
        serve: Callable[[Respond], FakePrometheus]) -> None:
    fake = serve(watched_host())
    observe_history(f"{fake.url}/prometheus/", HOUR)
    assert {path for path, _ in fake.requests} == {"/prometheus/api/v1/query",
                                                   "/prometheus/api/v1/query_range"}


def test_the_instance_asked_for_is_read(serve: Callable[[Respond], FakePrometheus]) -> None:
    c = watched_host()
    c.instances.append({"metric": {"instance": "other:9870"}, "value": [NOW, "1"]})
    fake = serve(c)
    assert [o.program for o in observe_history(fake.url, HOUR, instance=INSTANCE)] == ["cron", "web"]
    assert 'instance="host:9870"' in fake.queries()[2]["query"]


def test_series_without_an_instance_label_are_read(
        serve: Callable[[Respond], FakePrometheus]) -> None:
    c = watched_host()
    c.instances = [{"metric": {}, "value": [NOW, "3"]}]
    fake = serve(c)
    observe_history(fake.url, HOUR)
    assert fake.queries()[2]["query"].endswith(',instance=""}')


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        observe_history("http://127.0.0.1:9090", 0)


# --- one line for everything that is not a usable answer ---


def test_a_refused_port() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert history_error(url) == (f"cannot reach Prometheus at {url}: connection refused "
                                  "(nothing listens there)")


def test_an_unknown_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    assert history_error("http://prometheus.invalid:9090") == (
        "cannot reach Prometheus at http://prometheus.invalid:9090: unknown host "
        "(Name or service not known)")


def test_no_answer_in_time() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert history_error(url, timeout=0.2) == (
            f"cannot reach Prometheus at {url}: no whole answer within 0.2s")


def test_credentials_in_the_url_are_sent_as_basic_auth(
        serve: Callable[[Respond], FakePrometheus]) -> None:
    fake = serve(watched_host())
    observe_history(fake.url.replace("://", "://admin:s%40cret@"), HOUR)
    assert set(fake.authorization) == {"Basic YWRtaW46c0BjcmV0"}  # admin:s@cret


def test_credentials_never_reach_the_message(serve: Callable[[Respond], FakePrometheus]) -> None:
    port = free_port()
    message = history_error(f"http://admin:s3cret@127.0.0.1:{port}")
    assert message == (f"cannot reach Prometheus at http://127.0.0.1:{port}: connection refused "
                       "(nothing listens there)")
    fake = serve(answering(404, "text/plain", "404 page not found"))
    message = history_error(fake.url.replace("://", "://admin:s3cret@"))
    assert "s3cret" not in message and fake.url in message


@pytest.mark.parametrize("url", ["prometheus:9090", "ftp://127.0.0.1:9090", "http://", "http://h:x"])
def test_not_an_http_url(url: str) -> None:
    assert history_error(url).endswith("is not the http(s) URL of a Prometheus server "
                                       "(e.g. http://127.0.0.1:9090)")


def answering(status: int, kind: str, body: str) -> Respond:
    return lambda path, params: (status, kind, body.encode())


NOT_API = [
    ("a plain web page", answering(200, "text/html; charset=utf-8",
                                   "<!doctype html><html><body>Welcome</body></html>"),
     "/api/v1/query answered text/html, not JSON"),
    ("a 404", answering(404, "text/plain", "404 page not found"), "HTTP 404 for /api/v1/query"),
    ("an exporter", answering(200, "text/plain; version=0.0.4",
                              "# HELP up Up.\n# TYPE up gauge\nup 1\n"),
     "/api/v1/query answered metrics text, as an exporter's /metrics does, not JSON"),
    ("other JSON", answering(200, "application/json", '{"hello": "world"}'),
     '/api/v1/query answered JSON with no status "success" with data.resultType'),
    ("a JSON list", answering(200, "application/json", "[1, 2]"),
     "/api/v1/query answered JSON that is no object"),
    ("success without resultType", answering(200, "application/json",
                                             '{"status": "success", "data": {"result": []}}'),
     '/api/v1/query answered JSON with no status "success" with data.resultType'),
    ("a JSON 404", answering(404, "application/json", '{"status": "success", "data": {}}'),
     "/api/v1/query answered JSON with HTTP 404"),
    ("a vector for time()", lambda path, params: success("vector", []),
     "a vector came where a scalar was due"),
]


@pytest.mark.parametrize(("respond", "detail"), [(r, d) for _, r, d in NOT_API],
                         ids=[name for name, _, _ in NOT_API])
def test_an_answer_that_is_not_prometheus_api(serve: Callable[[Respond], FakePrometheus],
                                              respond: Respond, detail: str) -> None:
    fake = serve(respond)
    assert history_error(fake.url) == (
        f"{fake.url} does not answer like Prometheus's HTTP API ({detail}): give the address of "
        "the Prometheus server, e.g. http://127.0.0.1:9090")


def test_a_malformed_result(serve: Callable[[Respond], FakePrometheus]) -> None:
    c = watched_host()
    c.now = [{"metric": {"__name__": TREE}}]  # no value
    fake = serve(c)
    assert "(a malformed result)" in history_error(fake.url)


@pytest.mark.parametrize(("status", "error_type", "error"), [
    (400, "bad_data", 'invalid parameter "query": 1:5: parse error: unclosed left parenthesis'),
    (422, "execution", "query processing would load too many samples into memory"),
    (503, "timeout", "query timed out in expression evaluation"),
])
def test_a_prometheus_error_is_quoted(serve: Callable[[Respond], FakePrometheus], status: int,
                                      error_type: str, error: str) -> None:
    fake = serve(lambda path, params: failure(status, error_type, error))
    assert history_error(fake.url) == (
        f"Prometheus at {fake.url} answered /api/v1/query with an error: {error_type}: {error}")


def test_a_prometheus_error_stays_one_short_line(serve: Callable[[Respond], FakePrometheus]) -> None:
    fake = serve(lambda path, params: failure(400, "bad_data", "line one\nline two " + "x" * 500))
    message = history_error(fake.url)
    assert "line one\\nline two" in message and len(message) < 400
    assert message.endswith("... (519 characters)")


def test_no_series_at_all_is_no_samples_yet(serve: Callable[[Respond], FakePrometheus]) -> None:
    fake = serve(Canned())
    assert history_error(fake.url) == (
        f"no samples yet: Prometheus at {fake.url} has no {TREE} series in the last 7d; "
        "is it scraping the listener?")


def test_several_instances_must_be_told_apart(serve: Callable[[Respond], FakePrometheus]) -> None:
    c = watched_host()
    c.instances = [{"metric": {"instance": i}, "value": [NOW, "1"]} for i in ("b:9870", "a:9870")]
    fake = serve(c)
    assert history_error(fake.url, window=HOUR) == (
        f"Prometheus at {fake.url} has {TREE} series from several instances in the last 1h "
        "(a:9870, b:9870): pass --instance with this host's")


def test_an_instance_without_series(serve: Callable[[Respond], FakePrometheus]) -> None:
    fake = serve(watched_host())
    assert history_error(fake.url, window=300, instance="elsewhere:9870") == (
        f'no samples yet: Prometheus at {fake.url} has no {TREE} series with '
        f'instance="elsewhere:9870" in the last 5m; instances with series: {INSTANCE}')


def test_series_in_the_window_but_none_now(serve: Callable[[Respond], FakePrometheus]) -> None:
    c = watched_host()
    c.now = []
    fake = serve(c)
    assert history_error(fake.url, window=90) == (
        f"Prometheus at {fake.url} has {TREE} series in the last 90s but none now: is the "
        "listener still running, and Prometheus still scraping it?")
