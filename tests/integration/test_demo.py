"""The demo (deploy/demo/run.py) starts as the README says and shows a restart in /metrics;
stopping it leaves no process behind."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import scrape, value

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

RUN = h.DEPLOY / "demo" / "run.py"


@pytest.fixture
def output() -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="mw-demo-", suffix=".out")
    os.close(fd)
    yield Path(name)
    Path(name).unlink(missing_ok=True)


def demo_dir(output: Path) -> Path | None:
    """The directory the demo says it made (its first line), once it has said so."""
    for line in output.read_text().splitlines():
        if line.startswith("sentry-memwatch demo in "):
            return Path(line.removeprefix("sentry-memwatch demo in "))
    return None


def restarts(port: int) -> float | None:
    total = sum(v for (name, _), v in scrape(port).items() if name == "memwatch_restarts_total")
    return total or None


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read().decode()


def web_signals(port: int) -> float:
    return value(scrape(port), "memwatch_child_signals_total", group="sentry-web",
                 process="sentry-web") or 0


def test_the_demo_shows_a_restart_and_stops_cleanly(output: Path) -> None:
    metrics_port, web_port = h.free_port(), h.free_port()
    # The README's command (.venv/bin/python deploy/demo/run.py), with free ports; start() gives
    # it a session of its own, which supervisord and all its children share.
    proc = h.start([sys.executable, str(RUN), "--metrics-port", str(metrics_port),
                    "--web-port", str(web_port)], output, cwd=h.REPO)
    sid = proc.pid
    root = None
    try:
        root = h.wait_for(lambda: demo_dir(output), what="the demo to say where it runs", timeout=30,
                          proc=proc, log=output)
        h.wait_for(lambda: restarts(metrics_port), what="a restart in the demo's /metrics",
                   timeout=90, proc=proc, log=root / "memwatch.log")
        # the README's `curl /leak`: Granian's master gets SIGHUP and replaces its workers one by
        # one, the bloated one with them, while the web keeps answering and the master stays
        if shutil.which("granian", path=str(Path(sys.executable).parent)):
            leaker = int(get(web_port, "/leak?mb=200").split()[-1])
            h.wait_for(lambda: web_signals(metrics_port) >= 1, what="the bloated worker signalled",
                       timeout=60, proc=proc, log=root / "memwatch.log")
            h.wait_for(lambda: not psutil.pid_exists(leaker), what="the bloated worker gone",
                       timeout=60, proc=proc, log=root / "memwatch.log")
            assert get(web_port, "/").startswith("ok ")
            assert value(scrape(metrics_port), "memwatch_restarts_total", group="sentry-web",
                         process="sentry-web") == 0
        running = h.session_processes(sid)
        assert len(running) > 5, running  # supervisord, web master and workers, hogs, listener

        # Ctrl-C's effect: SIGINT to the demo's process group (run.py and supervisord)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, h.log_tail(output)
        h.wait_for(lambda: not h.session_processes(sid), what="every process of the demo to exit",
                   timeout=15)
        assert not root.exists(), f"the demo left {root} behind"
    finally:
        left = h.session_processes(sid)
        h.kill_session(sid)
        h.stop(proc)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes left behind: {left}"
