"""The demo (deploy/demo/run.py) starts as the README says and shows a restart in /metrics;
stopping it leaves no process behind."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import scrape

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


def test_the_demo_shows_a_restart_and_stops_cleanly(output: Path) -> None:
    metrics_port, web_port = h.free_port(), h.free_port()
    # The README's command (.venv/bin/python deploy/demo/run.py), with free ports; start() gives
    # it a session of its own, which supervisord and all its children share.
    proc = h.start([sys.executable, str(RUN), "--metrics-port", str(metrics_port),
                    "--web-port", str(web_port)], output, cwd=h.REPO)
    sid = proc.pid
    root = None
    try:
        root = h.wait_for(lambda: demo_dir(output), "the demo to say where it runs", timeout=30,
                          proc=proc, log=output)
        h.wait_for(lambda: restarts(metrics_port), "a restart in the demo's /metrics",
                   timeout=90, proc=proc, log=root / "memwatch.log")
        running = h.session_processes(sid)
        assert len(running) > 5, running  # supervisord, web master and workers, hogs, listener

        # Ctrl-C's effect: SIGINT to the demo's process group (run.py and supervisord)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, h.log_tail(output)
        h.wait_for(lambda: not h.session_processes(sid), "every process of the demo to exit",
                   timeout=15)
        assert not root.exists(), f"the demo left {root} behind"
    finally:
        left = h.session_processes(sid)
        h.kill_session(sid)
        h.stop(proc)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes left behind: {left}"
