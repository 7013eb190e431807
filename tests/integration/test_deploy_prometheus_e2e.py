"""End to end: a real Prometheus scrapes a real listener that a real supervisord runs as an
[eventlistener] on TICK_5; a stand-in is over its limit before the listener even starts, is
restarted on the listener's first tick, and the restart alert of the shipped rule file
(deploy/prometheus/memwatch-rules.yml, unmodified) fires with the process's labels. Then
`promtool check metrics` reads the same /metrics and finds nothing.

This is the case increase() alone cannot see: with a 15 s scrape interval, Prometheus's first
sample of memwatch_restarts_total for the stand-in is already 1 (the series is born with the
restart). The rules' `x unless x offset w` half is what makes it fire.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import textwrap
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import HOG, PY, Supervisord, scrape, value

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

RULES = h.DEPLOY / "prometheus" / "memwatch-rules.yml"
PROCESS = {"group": "standin", "process": "standin"}


@dataclass
class Stack:
    sv: Supervisord
    prometheus_port: int
    metrics_port: int
    old_pid: int
    root: Path

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
    # the stand-in holds 80 MiB (limit 40 MB) from the start, and the listener starts after it;
    # once restarted it holds 10 MiB (the flag is gone), so it is restarted once
    first_run = root / "first-run"
    first_run.touch()
    sv = Supervisord(textwrap.dedent(f"""
        [program:standin]
        command=/bin/sh -c 'if [ -e {first_run} ]; then rm -f {first_run}; exec {PY} {HOG} --mb 80; else exec {PY} {HOG} --mb 10; fi'
        startsecs=1
        stopwaitsecs=5
        priority=1

        [eventlistener:memwatch]
        command={PY} -m listener -g standin=40MB --metrics-port {metrics_port} --state-dir {root}/state
        events=TICK_5
        priority=999
        stderr_logfile={root}/memwatch.log
        """), root)
    proc = None
    try:
        old_pid = sv.wait_running("standin:standin", "memwatch:memwatch")["standin:standin"]
        (root / "prometheus.yml").write_text(textwrap.dedent(f"""\
            global:
              scrape_interval: 15s
              evaluation_interval: 1s
            rule_files:
              - {RULES}
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
        stack = Stack(sv, prometheus_port, metrics_port, old_pid, root)

        h.wait_for(lambda: (value(scrape(metrics_port), "memwatch_restarts_total", **PROCESS)
                            or 0) >= 1 or None,
                   "the listener to restart the stand-in", timeout=30, log=root / "memwatch.log")
        # Prometheus's first sample of the counter is already 1: it never saw a 0
        first = h.wait_for(lambda: stack.stored(restarts_selector()) or None,
                           "Prometheus to store memwatch_restarts_total", timeout=60, proc=proc,
                           log=log)
        assert first == [1.0], first
        yield stack
    finally:
        if proc is not None:
            h.stop(proc)
        sv.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_prometheus_fires_the_restart_alert_with_the_process_labels(stack: Stack) -> None:
    def firing() -> dict[str, Any] | None:
        for alert in stack.api("alerts")["alerts"]:
            if alert["labels"]["alertname"] == "MemwatchProcessRestarted" \
                    and alert["state"] == "firing":
                return alert
        return None

    alert = h.wait_for(firing, "MemwatchProcessRestarted to fire", timeout=60)
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


def test_promtool_check_metrics_finds_nothing_on_a_listener_that_restarted(stack: Stack) -> None:
    promtool = h.require_binary("promtool", "apt-get install prometheus")
    url = f"http://127.0.0.1:{stack.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read()
    assert b'memwatch_restarts_total{group="standin",process="standin"} 1.0' in text, text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), result
