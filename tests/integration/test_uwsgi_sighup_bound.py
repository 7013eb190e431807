"""What bounds a uWSGI worker sent SIGHUP, the signal `children = auto` sends one over its limit:
it finishes its request however long that takes; `worker-reload-mercy` does not cut it (it bounds
the master's reloads), `harakiri` does. README and deploy/ size `child-signal-timeout` (90 s) on
this: above the guide's harakiri (60 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.harness import free_port, wait_for

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

APP = """\
import os, time
def application(environ, start_response):
    open(os.environ["MW_STARTED"], "w").write(str(os.getpid()))
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]
"""


def request_answer(port: int, seconds: float, answer: dict[str, object]) -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?{seconds}", timeout=60) as resp:
            answer["body"] = resp.read()
    except (urllib.error.URLError, ConnectionError) as exc:
        answer["error"] = exc
    answer["at"] = time.monotonic()


@pytest.mark.parametrize("bound", ["worker-reload-mercy", "harakiri"])
def test_a_worker_sent_sighup_is_bounded_by_harakiri_not_by_the_mercy(
        bound: str, tmp_path: Path) -> None:
    uwsgi = h.require_binary("uwsgi", "pip install pyuwsgi")
    (tmp_path / "app.py").write_text(APP)
    port, started = free_port(), tmp_path / "started"
    log = tmp_path / "uwsgi.log"
    with open(log, "wb") as out:
        master = subprocess.Popen(
            [uwsgi, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", str(tmp_path / "app.py"),
             "--master", "--processes", "1", "--die-on-term", f"--{bound}", "2"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "MW_STARTED": str(started)},
            start_new_session=True)
    try:
        wait_for(lambda: psutil.Process(master.pid).children(), what="the worker", proc=master,
                 log=log)
        wait_for(lambda: h.port_accepts(port), what="uWSGI to listen", proc=master, log=log)
        answer: dict[str, object] = {}
        client = threading.Thread(target=request_answer, args=(port, 6, answer))  # a 6 s request
        client.start()
        worker = int(wait_for(lambda: started.exists() and started.read_text(),
                              what="the request to begin", proc=master, log=log))
        os.kill(worker, signal.SIGHUP)
        signalled = time.monotonic()
        client.join(60)
        took = float(answer["at"]) - signalled  # type: ignore[arg-type]
        if bound == "worker-reload-mercy":
            assert answer.get("body") == b"done", (answer, h.log_tail(log))
            assert took > 4, took  # served to its end, 2 s past the mercy
        else:
            assert "body" not in answer, answer  # cut by harakiri
            assert took < 5.5, took
    finally:
        h.stop(master)
