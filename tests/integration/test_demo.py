"""The demo (deploy/demo/run.py) starts as the README says and shows a restart in /metrics;
stopping it leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from listener.journal import default_state_dir, journal_name
from tests.harness import scrape

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

RUN = h.DEPLOY / "demo" / "run.py"


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="mw-demo-", dir="/tmp"))  # short: unix socket path
    yield root
    # The demo's listener keeps its restart journal in the default state dir (the demo passes
    # no --state-dir); remove the one this run created.
    journal = Path(default_state_dir()) / journal_name(
        {"SUPERVISOR_PROCESS_NAME": "memwatch"}, f"unix://{root}/supervisor.sock")
    journal.unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)


def restarts(port: int) -> float | None:
    total = sum(v for (name, _), v in scrape(port).items() if name == "memwatch_restarts_total")
    return total or None


def test_the_demo_shows_a_restart_and_stops_cleanly(demo_dir: Path) -> None:
    metrics_port, web_port = h.free_port(), h.free_port()
    log = demo_dir.parent / f"{demo_dir.name}.out"
    # The README's command (.venv/bin/python deploy/demo/run.py), with a dir and free ports;
    # start() gives it a session of its own, which supervisord and all its children share.
    proc = h.start([sys.executable, str(RUN), "--dir", str(demo_dir),
                    "--metrics-port", str(metrics_port), "--web-port", str(web_port)],
                   log, cwd=h.REPO)
    sid = proc.pid
    try:
        h.wait_for(lambda: restarts(metrics_port), "a restart in the demo's /metrics",
                   timeout=90, proc=proc, log=demo_dir / "memwatch.log")
        assert f"sentry-memwatch demo in {demo_dir}" in log.read_text()
        running = h.session_processes(sid)
        assert len(running) > 5, running  # supervisord, web master and workers, hogs, listener

        # Ctrl-C's effect: SIGINT to the demo's process group (supervisord, run.py exec'd it)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, h.log_tail(log)
        h.wait_for(lambda: not h.session_processes(sid), "every process of the demo to exit",
                   timeout=15)
    finally:
        left = h.session_processes(sid)
        h.kill_session(sid)
        h.stop(proc)
        with contextlib.suppress(FileNotFoundError):
            log.unlink()
    assert not left, f"processes left behind: {left}"
