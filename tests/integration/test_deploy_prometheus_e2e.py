"""End to end: a real Prometheus scrapes a real listener that a real supervisord runs as an
[eventlistener] on TICK_5; a stand-in is over its limit before the listener even starts, is
restarted on the listener's first tick, and the restart alert of the shipped rule file
(deploy/prometheus/memwatch-rules.yml, unmodified) fires with the process's labels and reaches
a webhook in this test through a real Alertmanager running the shipped configuration
(deploy/alertmanager/alertmanager.yml, its webhook URL pointed here). Then `promtool check
metrics` reads the same /metrics and finds nothing.

This is the case increase() alone cannot see: with a 15 s scrape interval, Prometheus's first
sample of memwatch_restarts_total for the stand-in is already 1 (the series is born with the
restart). The rules' `x unless x offset w` half is what makes it fire.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import tempfile
import textwrap
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.harness import HOG, PY, Supervisord, scrape, value

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

RULES = h.DEPLOY / "prometheus" / "memwatch-rules.yml"
ALERTMANAGER = h.DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = h.DEPLOY / "grafana" / "memwatch-dashboard.json"
SHIPPED_WEBHOOK = "http://127.0.0.1:5001"


class Webhook:
    """A receiver for Alertmanager's webhook: keeps every notification it is sent."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
PROCESS = {"group": "standin", "process": "standin"}


@dataclass
class Stack:
    sv: Supervisord
    prometheus_port: int
    metrics_port: int
    old_pid: int
    root: Path
    webhook: Webhook

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/{path}{query}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            answer = json.load(resp)
        assert answer["status"] == "success", answer
        return answer["data"]

    def stored(self, expr: str) -> list[float]:
        return [float(r["value"][1]) for r in self.api("query", query=expr)["result"]]


def restarts_selector() -> str:
    return 'memwatch_restarts_total{group="standin",process="standin"}'


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    prometheus = h.require_binary("prometheus", "apt-get install prometheus")
    root = Path(tempfile.mkdtemp(prefix="mw-e2e-", dir="/tmp"))  # short: unix socket path
    metrics_port = h.free_port()
    # the stand-in holds 80 MiB (limit 40 MB) from the start, and the listener is started after
    # it (autostart=false: its pid read first);
    # once restarted it holds 10 MiB (the flag is gone), so it is restarted once
    first_run = root / "first-run"
    first_run.touch()
    hog = f"{PY} {HOG}"
    sv = Supervisord(textwrap.dedent(f"""
        [program:standin]
        command=/bin/sh -c 'test -e {first_run} && rm {first_run} && exec {hog} --mb 80; exec {hog} --mb 10'
        startsecs=1
        stopwaitsecs=5
        priority=1

        [eventlistener:memwatch]
        command={PY} -m listener -g standin=40MB --metrics-port {metrics_port} --state-dir {root}/state
        events=TICK_5
        priority=999
        autostart=false
        stderr_logfile={root}/memwatch.log
        """), root)
    proc = alertmanager = None
    webhook = Webhook()
    try:
        # the stand-in's pid read before the listener runs: once it runs, its first TICK_5 may
        # come before a look at both (under load), and the pid read would be the new one
        old_pid = sv.wait_running("standin:standin")["standin:standin"]
        sv.rpc().supervisor.startProcess("memwatch:memwatch")
        sv.wait_running("memwatch:memwatch")
        # the shipped Alertmanager configuration, its webhooks pointed at this test
        am_port = h.free_port()
        (root / "alertmanager.yml").write_text(
            ALERTMANAGER.read_text().replace(SHIPPED_WEBHOOK, webhook.url))
        am_binary = h.require_binary("prometheus-alertmanager", "apt-get install prometheus-alertmanager")
        alertmanager = h.start([am_binary, f"--config.file={root / 'alertmanager.yml'}",
                                f"--storage.path={root / 'am-data'}",
                                f"--web.listen-address=127.0.0.1:{am_port}",
                                "--cluster.listen-address="], root / "alertmanager.log", cwd=root)
        (root / "prometheus.yml").write_text(textwrap.dedent(f"""\
            global:
              scrape_interval: 15s
              evaluation_interval: 1s
            rule_files:
              - {RULES}
            alerting:
              alertmanagers:
                - static_configs:
                    - targets: ["127.0.0.1:{am_port}"]
            scrape_configs:
              - job_name: memwatch
                static_configs:
                  - targets: ["127.0.0.1:{metrics_port}"]
            """))
        prometheus_port = h.free_port()
        log = root / "prometheus.log"
        proc = h.start([prometheus, f"--config.file={root / 'prometheus.yml'}",
                        f"--storage.tsdb.path={root / 'data'}",
                        f"--web.listen-address=127.0.0.1:{prometheus_port}"], log, cwd=root)
        stack = Stack(sv, prometheus_port, metrics_port, old_pid, root, webhook)

        h.wait_for(lambda: (value(scrape(metrics_port), "memwatch_restarts_total", **PROCESS)
                            or 0) >= 1 or None,
                   what="the listener to restart the stand-in", timeout=30, log=root / "memwatch.log")
        # Prometheus's first sample of the counter is already 1: it never saw a 0
        first = h.wait_for(lambda: stack.stored(restarts_selector()) or None,
                           what="Prometheus to store memwatch_restarts_total", timeout=60, proc=proc,
                           log=log)
        assert first == [1.0], first
        yield stack
    finally:
        for running in (proc, alertmanager):
            if running is not None:
                h.stop(running)
        webhook.close()
        sv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_prometheus_fires_the_restart_alert_with_the_process_labels(stack: Stack) -> None:
    def firing() -> dict[str, Any] | None:
        for alert in stack.api("alerts")["alerts"]:
            if alert["labels"]["alertname"] == "MemwatchProcessRestarted" \
                    and alert["state"] == "firing":
                return alert
        return None

    alert = h.wait_for(firing, what="MemwatchProcessRestarted to fire", timeout=60)
    assert alert["labels"] == {
        "alertname": "MemwatchProcessRestarted",
        "group": "standin",
        "process": "standin",
        "instance": f"127.0.0.1:{stack.metrics_port}",
        "severity": "warning",
    }
    assert alert["annotations"]["summary"] == (
        f"standin:standin restarted for memory on 127.0.0.1:{stack.metrics_port}")
    assert float(alert["value"]) >= 1
    # it really was restarted: a new pid, and supervisord's log shows the stop
    assert stack.sv.wait_running("standin:standin")["standin:standin"] != stack.old_pid
    assert "stopped: standin " in stack.sv.log_text()
    # nothing else fires: no failure, no restart loop, the listener is up and ticking.
    # (MemwatchProcessNearLimit may be pending: the stand-in was at 200% of its limit for a
    # scrape or two, and that alert waits 15 minutes.)
    alerts = stack.api("alerts")["alerts"]
    firing_names = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
    assert firing_names == {"MemwatchProcessRestarted"}, alerts
    pending = {a["labels"]["alertname"] for a in alerts if a["state"] == "pending"}
    assert pending <= {"MemwatchProcessNearLimit"}, alerts


def test_the_restart_reaches_a_human_through_alertmanager(stack: Stack) -> None:
    def notified() -> dict[str, Any] | None:
        for note in stack.webhook.notifications:
            for alert in note["alerts"]:
                if alert["labels"].get("alertname") == "MemwatchProcessRestarted" \
                        and alert["status"] == "firing":
                    return {"note": note, "alert": alert}
        return None

    found = h.wait_for(notified, what="Alertmanager to notify the webhook", timeout=120)
    note, alert = found["note"], found["alert"]
    assert note["receiver"] == "team" and note["path"] == "/memwatch/team"  # a warning
    assert {k: alert["labels"][k] for k in ("group", "process", "instance", "severity")} == {
        "group": "standin", "process": "standin",
        "instance": f"127.0.0.1:{stack.metrics_port}", "severity": "warning"}
    assert alert["annotations"]["runbook_url"].endswith("#memwatchprocessrestarted")


def as_grafana_sends_it(expr: str) -> str:
    """A panel's query with the dashboard's variables as Grafana fills them, "All" selected."""
    for variable, value_ in (("$instance", ".*"), ("$group", ".*"), ("$__rate_interval", "5m")):
        expr = expr.replace(variable, value_)
    return expr


def test_every_dashboard_query_returns_data_from_the_live_prometheus(stack: Stack) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    # label_values(METRIC{...}, label): the variable's choices come from METRIC's series
    queries += [(f"variable {v['name']}", v["definition"][len("label_values("):].rsplit(",", 1)[0])
                for v in dashboard["templating"]["list"] if v["type"] == "query"]
    assert len(queries) >= 10
    for title, expr in queries:
        promql = as_grafana_sends_it(expr)
        h.wait_for(lambda q=promql: stack.stored(q) or None,  # type: ignore[misc]
                   what=f"data for {title!r}: {promql}", timeout=90)


def test_promtool_check_metrics_finds_nothing_on_a_listener_that_restarted(stack: Stack) -> None:
    promtool = h.require_binary("promtool", "apt-get install prometheus")
    url = f"http://127.0.0.1:{stack.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read()
    assert b'memwatch_restarts_total{group="standin",process="standin"} 1.0' in text, text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result


def listener_memory_rule() -> tuple[str, str]:
    """MemwatchListenerMemoryHigh's expression as shipped: (its left side, its bound)."""
    found = re.search(r"- alert: MemwatchListenerMemoryHigh\n(?:\s+#.*\n)*\s+expr: (.*) > (.*)\n",
                      RULES.read_text())
    assert found, "MemwatchListenerMemoryHigh moved or changed shape in memwatch-rules.yml"
    return found.group(1), found.group(2)


def test_prometheus_stores_the_listeners_own_memory_and_the_alert_selects_it(stack: Stack) -> None:
    # the watchdog watched: Prometheus scraped the real listener's own RSS (ProcessCollector
    # on its private registry) under the memwatch job
    series, bound = listener_memory_rule()
    stored = h.wait_for(lambda: stack.stored('process_resident_memory_bytes{job="memwatch"}') or None,
                        what="Prometheus to store the listener's own memory", timeout=60)
    assert len(stored) == 1, stored
    listener = psutil.Process(stack.sv.wait_running("memwatch:memwatch")["memwatch:memwatch"])
    assert abs(stored[0] - listener.memory_info().rss) < 16 * 2**20  # scraped up to 15 s ago
    # the shipped expression selects exactly that series (a selector that matched nothing would
    # never fire), and the listener is well under the bound
    (selected,) = stack.api("query", query=series)["result"]
    assert selected["metric"] == {"instance": f"127.0.0.1:{stack.metrics_port}"}
    (limit,) = stack.stored(f"vector({bound})")
    assert limit == 128 * 2**20 and float(selected["value"][1]) < limit / 2
