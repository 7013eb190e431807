"""The demo (deploy/demo/run.py) starts as the README says and shows a restart in /metrics;
SIGINT to its pid stops it and leaves no process behind; a taken port stops it with the reason;
its leaks stop at a cap."""

from __future__ import annotations

import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import HOG, scrape, value

try:
    from . import deploy_helpers as h
except ImportError:  # tests/integration is not a package
    import deploy_helpers as h  # type: ignore[no-redef]

RUN = h.DEPLOY / "demo" / "run.py"
MiB = 1024 * 1024


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
        # the banner's grep finds the metric (README's is the same)
        banner = output.read_text()
        assert "/metrics | grep ^memwatch_restarts_total" in banner
        assert "(removed with the demo; --dir DIR keeps them)" in banner

        # SIGINT to the demo's own pid alone (kill -INT PID; a terminal's Ctrl-C reaches the
        # whole group): the demo hands it on to supervisord, which stops everything
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, h.log_tail(output)
        h.wait_for(lambda: not h.session_processes(sid), what="every process of the demo to exit",
                   timeout=15)
        assert not root.exists(), f"the demo left {root} behind"
        assert f"removed {root} and its logs (--dir DIR keeps them)" in output.read_text()
    finally:
        left = h.session_processes(sid)
        h.kill_session(sid)
        h.stop(proc)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes left behind: {left}"


@pytest.mark.parametrize("taken", ["metrics", "web"])
def test_a_taken_port_stops_the_demo_with_the_reason_and_keeps_its_logs(
        output: Path, taken: str, tmp_path: Path) -> None:
    """The listener (or the web) cannot bind its port: the demo says why, from that program's
    log, prints no address that another program answers, exits 1 and keeps its directory."""
    if taken == "web" and not shutil.which("granian", path=str(Path(sys.executable).parent)):
        pytest.skip("the stand-in web serves no port")
    metrics_port, web_port = h.free_port(), h.free_port()
    root = tmp_path / "demo"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", metrics_port if taken == "metrics" else web_port))
        holder.listen()
        proc = h.start([sys.executable, str(RUN), "--dir", str(root), "--metrics-port",
                        str(metrics_port), "--web-port", str(web_port)], output, cwd=h.REPO)
        try:
            code = proc.wait(120)
            said = output.read_text()
            assert code == 1, said
            assert "status page:" not in said and f":{metrics_port}/" not in said, said
            reason = [line for line in said.splitlines() if "demo: error:" in line]
            assert len(reason) == 1, said
            if taken == "metrics":
                assert f"the listener exited, it does not serve port {metrics_port}" in reason[0]
                assert f"cannot serve metrics on 127.0.0.1:{metrics_port}: [Errno 98] Address " \
                    "already in use" in said
            else:
                assert f"sentry-web exited, it does not serve port {web_port}" in reason[0]
                assert "Address already in use" in said
            assert f"logs kept in {root}" in said
            assert (root / "memwatch.log").exists() and (root / "supervisord.log").exists()
            assert not h.session_processes(proc.pid), "the demo left processes behind"
        finally:
            h.kill_session(proc.pid)
            h.stop(proc)


def test_the_demos_leaks_stop_at_their_cap(tmp_path: Path) -> None:
    """Left alone (its restart budget spent, the listener gone), a leaker stops growing at
    --leak-cap-mb, in a master and in a pool child; and every leaker the demo runs has a cap."""
    demo = runpy.run_path(str(RUN), run_name="demo")
    conf, _ = demo["write_config"](tmp_path, 9870, 9000)
    leakers = [line for line in conf.read_text().splitlines()
               if line.startswith("command=") and "--leak-mb-per-sec" in line]
    assert len(leakers) == 2, conf.read_text()  # the workers and cron
    assert all(f"--leak-cap-mb {demo['LEAK_CAP_MB']}" in line for line in leakers), leakers
    assert demo["LEAK_CAP_MB"] <= 2 * 60  # the demo's limits are 60MB



@pytest.mark.parametrize("shape", [[], ["--children", "2", "--grow-child", "0"]],
                         ids=["master", "pool-child"])
def test_a_leak_left_alone_stops_growing_at_its_cap(shape: list[str], tmp_path: Path) -> None:
    cap, ready = 24, tmp_path / "ready"
    hog = subprocess.Popen([sys.executable, str(HOG), "--leak-mb-per-sec", "40", "--leak-cap-mb",
                            str(cap), "--ready-file", str(ready), *shape], stdout=subprocess.DEVNULL)
    try:
        h.wait_for(ready.exists, what="the hog to start", proc=hog)
        leaker = psutil.Process(int(ready.read_text().split()[1 if shape else 0]))  # child 0
        start = leaker.memory_info().rss
        h.wait_for(lambda: leaker.memory_info().rss >= start + cap * MiB * 0.9,
                   what="the leak to reach its cap", timeout=30)
        # uncapped, 40 MiB/s would add 60 MiB in this time
        held_until = time.monotonic() + 1.5
        while time.monotonic() < held_until:
            assert leaker.memory_info().rss < start + (cap + 8) * MiB
            time.sleep(0.1)
    finally:
        hog.kill()
        hog.wait()
