"""deploy/prometheus/: checked by promtool and loaded by a real Prometheus.

promtool checks the config and the rules and runs the rule unit tests
(memwatch-rules.test.yml). A real Prometheus then runs a copy of prometheus.yml that scrapes
a stand-in exporter serving memwatch's metric names; its API shows the rules as it loaded
them (names, labels, annotations) and the alerts they produce from scraped data.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

PROM_DIR = h.DEPLOY / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
RULES = PROM_DIR / "memwatch-rules.yml"
RULE_TESTS = PROM_DIR / "memwatch-rules.test.yml"
README = h.DEPLOY / "README.md"
RUNBOOK_BASE = "https://github.com/sentry-memwatch/sentry-memwatch/blob/main/deploy/README.md#"

# The metric names of the user-facing contract (shared/DESIGN.md), plus the gauge of
# processes memwatch stopped that are not running again.
CONTRACT_METRICS = {
    "memwatch_process_memory_bytes",
    "memwatch_process_memory_limit_bytes",
    "memwatch_process_over_limit_samples",
    "memwatch_restarts_total",
    "memwatch_restart_failures_total",
    "memwatch_restarts_suppressed_total",
    "memwatch_child_signals_total",
    "memwatch_child_signal_escalations_total",
    "memwatch_dry_run_actions_total",
    "memwatch_forced_stops_total",
    "memwatch_events_total",
    "memwatch_tick_duration_seconds",
    "memwatch_last_tick_timestamp_seconds",
    "memwatch_supervisor_up",
    "memwatch_sample_errors_total",
    "memwatch_build_info",
    "memwatch_stopped_not_running",
    "memwatch_oom_kills_total",
    "memwatch_host_oom_kills_total",
}

REQUIRED_ALERTS = {
    "MemwatchProcessRestarted",
    "MemwatchRestartLoop",
    "MemwatchRestartsSuppressed",
    "MemwatchRestartFailed",
    "MemwatchForcedStop",
    "MemwatchProcessNearLimit",
    "MemwatchDown",
    "MemwatchStalled",
    "MemwatchSupervisorUnreachable",
    "MemwatchListenerMemoryHigh",
    "MemwatchOOMKill",
    "MemwatchHostOOMKill",
}

# The listener's own process metrics (prometheus_client's ProcessCollector): what the rules may
# select besides memwatch_*.
PROCESS_METRICS = {
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = h.require_binary("promtool", "apt-get install prometheus")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_check_config(tmp_path: Path) -> None:
    # Run from elsewhere: rule_files must resolve relative to the config file itself.
    result = promtool("check", "config", str(CONFIG), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


ALERTMANAGER = h.DEPLOY / "alertmanager" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = h.require_binary("amtool", "apt-get install prometheus-alertmanager")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


def test_amtool_check_config() -> None:
    result = amtool("check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 receivers" in result.stdout and "2 inhibit rules" in result.stdout


@pytest.mark.parametrize(("severity", "receiver"), [
    ("critical", "pager"), ("warning", "team"), ("info", "team")])
def test_alertmanager_routes_each_severity_of_the_rules(severity: str, receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER}",
                    f"severity={severity}", "alertname=MemwatchProcessRestarted")
    assert result.stdout.strip() == receiver, result.stdout + result.stderr


def test_every_severity_the_rules_use_is_routed() -> None:
    used = set(re.findall(r"severity: (\w+)", RULES.read_text()))
    assert used == {"critical", "warning", "info"}, used


def test_promtool_check_rules(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(RULES), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(tmp_path: Path) -> None:
    result = promtool("test", "rules", str(RULE_TESTS), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_use_only_metric_names_memwatch_exports() -> None:
    # The rule unit tests feed the rules their own series names: a typo in a metric name
    # would pass them and never fire in production.
    used = set(re.findall(r"\bmemwatch_[a-z_]+", RULES.read_text()))
    assert used, "no memwatch_ metric in the rules"
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS
    own = set(re.findall(r"\bprocess_[a-z_]+", RULES.read_text()))
    assert own <= PROCESS_METRICS, own - PROCESS_METRICS


def test_rules_on_the_listeners_own_process_select_the_memwatch_job() -> None:
    # every exporter exports process_*: without the job, node_exporter's would fire the alert
    rules = "\n".join(line for line in RULES.read_text().splitlines()
                      if not line.lstrip().startswith("#"))
    uses = re.findall(r"\bprocess_[a-z_]+(\{[^}]*\})?", rules)
    assert uses and all('job="memwatch"' in selector for selector in uses), uses


def rule_tests_by_alert() -> dict[str, set[bool]]:
    """alertname -> {True if some case expects it firing, False if some case expects none}."""
    cases: dict[str, set[bool]] = {}
    for block in RULE_TESTS.read_text().split("- eval_time:")[1:]:
        name = re.search(r"^\s*alertname:\s*(\S+)\s*$", block, re.MULTILINE)
        expect = re.search(r"^\s*exp_alerts:(.*)$", block, re.MULTILINE)
        assert name and expect, block
        cases.setdefault(name.group(1), set()).add(expect.group(1).strip() != "[]")
    return cases


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub gives the headings of a markdown file (outside code blocks)."""
    anchors = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# --- a real Prometheus -----------------------------------------------------------------------

EXPORTER_GROUP = "sentry-web"
EXPORTER_PROCESS = "sentry-web"


def exposition() -> bytes:
    """What memwatch serves for one process at 95% of its limit, in good health otherwise."""
    labels = f'group="{EXPORTER_GROUP}",process="{EXPORTER_PROCESS}"'
    lines = [
        "# TYPE memwatch_process_memory_bytes gauge",
        f'memwatch_process_memory_bytes{{{labels},measure="pss"}} 950000000',
        "# TYPE memwatch_process_memory_limit_bytes gauge",
        f"memwatch_process_memory_limit_bytes{{{labels}}} 1000000000",
        "# TYPE memwatch_restarts_total counter",
        f"memwatch_restarts_total{{{labels}}} 0",
        "# TYPE memwatch_restart_failures_total counter",
        f"memwatch_restart_failures_total{{{labels}}} 0",
        "# TYPE memwatch_restarts_suppressed_total counter",
        f"memwatch_restarts_suppressed_total{{{labels}}} 0",
        "# TYPE memwatch_last_tick_timestamp_seconds gauge",
        f"memwatch_last_tick_timestamp_seconds {time.time():.3f}",
        "# TYPE memwatch_supervisor_up gauge",
        "memwatch_supervisor_up 1",
        "# TYPE memwatch_stopped_not_running gauge",
        "memwatch_stopped_not_running 0",
        "# TYPE process_resident_memory_bytes gauge",
        "process_resident_memory_bytes 30000000",  # the listener's own, well under its bound
    ]
    return ("\n".join(lines) + "\n").encode()


class ExporterHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = exposition()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass
class Prometheus:
    port: int
    target: str

    def api(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            answer = json.load(resp)
        assert answer["status"] == "success", answer
        return answer["data"]


def config_for_test(text: str, target: str, alertmanager: str) -> str:
    """prometheus.yml with fast intervals and its targets replaced by the stand-ins."""
    subs = [
        (r"^(\s*)scrape_interval: \S+$", r"\1scrape_interval: 1s"),
        (r"^(\s*)evaluation_interval: \S+$", r"\1evaluation_interval: 1s"),
        (r'^(\s*)- targets: \["localhost:9093"\]$', rf'\1- targets: ["{alertmanager}"]'),
        (r"^(\s*)- targets:\n(\s*- \S+:987[01]\n)+", rf'\1- targets: ["{target}"]\n'),
    ]
    for pattern, replacement in subs:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"deploy/prometheus/prometheus.yml no longer matches {pattern!r}"
    return text


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = h.require_binary("prometheus", "apt-get install prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), ExporterHandler)
    thread = threading.Thread(target=exporter.serve_forever, daemon=True)
    thread.start()
    target = f"127.0.0.1:{exporter.server_address[1]}"
    config = tmp / "prometheus.yml"
    config.write_text(config_for_test(CONFIG.read_text(), target, f"127.0.0.1:{h.free_port()}"))
    (tmp / RULES.name).write_bytes(RULES.read_bytes())
    port = h.free_port()
    log = tmp / "prometheus.log"
    proc = h.start(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
        cwd=tmp,
    )
    try:
        prom = Prometheus(port, target)
        h.wait_for(lambda: prom.api("status/buildinfo"), what="Prometheus API", proc=proc, log=log)
        yield prom
    finally:
        h.stop(proc)
        exporter.shutdown()
        exporter.server_close()


def alerting_rules(prom: Prometheus) -> dict[str, dict[str, Any]]:
    return {
        rule["name"]: rule
        for group in prom.api("rules")["groups"]
        for rule in group["rules"]
        if rule["type"] == "alerting"
    }


def test_prometheus_scrapes_the_memwatch_job(prometheus: Prometheus) -> None:
    def target_up() -> dict[str, Any] | None:
        for target in prometheus.api("targets")["activeTargets"]:
            if target["labels"]["job"] == "memwatch" and target["health"] == "up":
                return target
        return None

    target = h.wait_for(target_up, what="the memwatch target to be up")
    assert target["labels"]["instance"] == prometheus.target


def test_prometheus_loads_and_evaluates_every_rule(prometheus: Prometheus) -> None:
    def all_evaluated() -> dict[str, dict[str, Any]] | None:
        rules = alerting_rules(prometheus)
        done = all(
            rule["health"] == "ok" and not rule["lastEvaluation"].startswith("0001-")
            for rule in rules.values()
        )
        return rules if rules and done else None

    rules = h.wait_for(all_evaluated, what="every rule to be evaluated without error")
    assert set(rules) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(rules)


def test_near_limit_joins_scraped_memory_and_limit(prometheus: Prometheus) -> None:
    def near_limit() -> dict[str, Any] | None:
        for alert in prometheus.api("alerts")["alerts"]:
            if alert["labels"]["alertname"] == "MemwatchProcessNearLimit":
                return alert
        return None

    alert = h.wait_for(near_limit, what="MemwatchProcessNearLimit to become pending")
    assert alert["state"] == "pending"  # for: 15m
    assert alert["labels"] == {
        "alertname": "MemwatchProcessNearLimit",
        "group": EXPORTER_GROUP,
        "process": EXPORTER_PROCESS,
        "instance": prometheus.target,
        "severity": "warning",
    }
    others = {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]}
    assert others == {"MemwatchProcessNearLimit"}, others


def test_every_alert_is_labelled_documented_and_tested(prometheus: Prometheus) -> None:
    rules = h.wait_for(lambda: alerting_rules(prometheus) or None, what="rules to load")
    anchors = github_anchors(README.read_text())
    tested = rule_tests_by_alert()
    per_process = re.compile(r"\{\{ \$labels\.group \}\}:\{\{ \$labels\.process \}\}")
    by_process = re.compile(r"by \([^)]*\bprocess\b")
    for name, rule in rules.items():
        assert rule["labels"].get("severity") in {"info", "warning", "critical"}, name
        notes = rule["annotations"]
        assert notes.get("summary"), name
        assert "{{ $labels.instance }}" in notes.get("description", ""), name
        if by_process.search(rule["query"]):
            assert per_process.search(notes["description"]), name
        url = notes.get("runbook_url", "")
        assert url.startswith(RUNBOOK_BASE), (name, url)
        anchor = url[len(RUNBOOK_BASE) :]
        assert anchor == name.lower(), (name, url)
        assert anchor in anchors, f"{name}: no heading for #{anchor} in deploy/README.md"
        assert tested.get(name) == {True, False}, (
            f"{name}: memwatch-rules.test.yml must show it both firing and not firing"
        )
