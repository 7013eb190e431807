"""`sentry-memwatch advise` live on today's Sentry servers under one real supervisord: real
Granian (the CLI, `--workers 2`, one worker bloated through the app) and a real taskbroker-client
TaskWorker (`sentry run taskworker --concurrency=3`: 3 spawned children and multiprocessing's
resource tracker; one child grown by a real task from the stand-in broker). advise names each
server, gives per-worker figures (the tracker is no worker), Granian a --workers-max-rss under
memwatch's limit and above its workers' RSS, and the taskworker the --concurrency this host's
memory holds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.harness import PY, ROOT, Supervisord, free_port, short_dir, wait_for

pytest.importorskip("granian")
pytest.importorskip("taskbroker_client")
pytest.importorskip("sentry_protos")
pytest.importorskip("grpc")

from tests.taskbroker_standin import Broker  # noqa: E402  (needs grpc and sentry_protos)
from tests.taskworker_app import APP_NAME, NAMESPACE, install_sentry  # noqa: E402

MiB = 2**20
WEB_LEAK_MB, TASK_MB, CONCURRENCY = 60, 80, 3
SAFETY, FIRST_LINE_ROOM = 0.10, 1.1  # what README says advise keeps free and keeps above


@dataclass
class Servers:
    sv: Supervisord
    root: Path
    bloated_worker: int  # the Granian worker that leaked WEB_LEAK_MB
    grown_child: int  # the taskworker child holding TASK_MB for its task


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return resp.read().decode()


def grown(log: Path) -> int | None:
    """The pid of the child whose task has grown (tests.taskworker_app's tasks.log)."""
    lines = log.read_text().splitlines() if log.exists() else []
    return next((int(f[1]) for f in map(str.split, lines) if f[2] == "grown"), None)


def split(pid: int) -> tuple[set[int], set[int]]:
    """A parent's children: (workers, multiprocessing's helpers)."""
    workers, helpers = set(), set()
    for child in psutil.Process(pid).children():
        tracker = "multiprocessing.resource_tracker" in " ".join(child.cmdline())
        (helpers if tracker else workers).add(child.pid)
    return workers, helpers


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    root = short_dir("mwas-")
    sentry = install_sentry(root / "bin", PY, ROOT)
    granian = ROOT / ".venv" / "bin" / "granian"
    web_port, broker_port, worker_port = free_port(), free_port(), free_port()
    web = (f"{granian if granian.exists() else f'{PY} -m granian'} --interface wsgi --host "
           f"127.0.0.1 --port {web_port} --workers 2 --working-dir {ROOT / 'deploy' / 'demo'} "
           "webapp:application")
    taskworker = (f"{sentry} run taskworker --concurrency={CONCURRENCY} --rpc-host=127.0.0.1:"
                  f"{broker_port} --grpc-port={worker_port} --max-child-task-count=10000")
    broker = Broker(broker_port, f"127.0.0.1:{worker_port}", NAMESPACE, APP_NAME)
    sv = None
    try:
        sv = Supervisord(textwrap.dedent(f"""
            [program:web]
            command={web}
            stopasgroup=true
            startsecs=1

            [program:taskworker]
            command={taskworker}
            environment=TASKWORKER_TEST_DIR="{root}"
            stopasgroup=true
            killasgroup=true
            startsecs=1
            redirect_stderr=true
            stdout_logfile={root}/taskworker.log
            """), root)
        pids = sv.wait_running("web:web", "taskworker:taskworker", timeout=60)
        wait_for(lambda: len(split(pids["web:web"])[0]) == 2 and get(web_port, "/"), 60,
                 what="2 Granian workers answering")
        wait_for(lambda: [len(s) for s in split(pids["taskworker:taskworker"])] == [CONCURRENCY, 1],
                 60, what="the taskworker's children and its tracker")
        bloated = int(get(web_port, f"/leak?mb={WEB_LEAK_MB}").split()[-1])
        broker.push("hold", deadline=300, tag="big", mb=TASK_MB, seconds=300)
        child = wait_for(lambda: grown(root / "tasks.log"), 60, what="the task's child grown")
        yield Servers(sv, root, bloated, child)
    finally:
        (root / "release-big").touch()
        if sv is not None:
            sv.stop()
        broker.close()


def advise(servers: Servers) -> dict[str, dict[str, Any]]:
    rules = servers.root / "memwatch.conf"
    rules.write_text("[memwatch]\nmeasure = pss\n\n[group:web]\nlimit = 1GB\nchildren = auto\n\n"
                     "[group:taskworker]\nlimit = 1GB\nchildren = auto\n")
    done = subprocess.run([PY, "-m", "listener", "advise", "--config", str(rules), "--duration",
                           "4s", "--interval", "1s", "--format", "json"], capture_output=True,
                          text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "SUPERVISOR_SERVER_URL": servers.sv.url,
                               "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    return {"host": data["host"], **{p["program"]: p for p in data["programs"]}}


def test_advise_gives_granian_a_workers_max_rss_under_memwatchs_limit(servers: Servers) -> None:
    seen = advise(servers)
    web = seen["web"]
    assert (web["kind"], web["processes"], web["children_per_process"]) == ("granian", 1, 2)
    workers = web["worker_memory_bytes"]
    # the bloated worker holds what it leaked (PSS: its own pages), the other far less
    assert workers["max"] >= WEB_LEAK_MB * MiB > workers["p50"]
    assert web["recommended_limit_bytes"] > workers["max"]
    # Granian compares RSS: the figure sits above the bloated worker's RSS now (read here), and
    # memwatch's limit 10% above it
    wmr = web["workers_max_rss_mib"] * MiB
    assert wmr > psutil.Process(servers.bloated_worker).memory_info().rss
    assert web["recommended_limit_bytes"] >= wmr * FIRST_LINE_ROOM
    assert any(f"workers-max-rss = {web['workers_max_rss_mib']} (MiB" in s for s in web["advice"])
    assert web["concurrency_fits"] is None
    print(f"\nweb: workers {workers}, limit {web['recommended_limit_bytes']}, advice {web['advice']}")


def test_advise_gives_the_taskworker_the_concurrency_this_hosts_memory_holds(servers: Servers) -> None:
    seen = advise(servers)
    host, tw = seen["host"], seen["taskworker"]
    workers, helpers = split(servers.sv.pid("taskworker:taskworker"))
    assert len(helpers) == 1 and servers.grown_child in workers
    # the resource tracker is never counted as a worker: 3 children, not 4
    assert (tw["kind"], tw["processes"], tw["children_per_process"]) == ("taskworker", 1, CONCURRENCY)
    child = tw["worker_memory_bytes"]
    assert child["max"] >= TASK_MB * MiB > child["p50"]  # the grown child, then the others
    assert tw["workers_max_rss_mib"] is None
    # the children that fit: the tree's p99 now, a child's p99 for each child more, in what the
    # program uses plus what the host has available, 10% of memory kept free (the tree held
    # still over the run: its mean lies within 2% of its p50, and under its max)
    tree = tw["process_memory_bytes"]

    def fits(in_use: int) -> int:
        room = in_use + host["memory_available_bytes"] - SAFETY * host["memory_total_bytes"]
        return max(0, math.floor(CONCURRENCY + (room - tree["p99"]) / child["p99"]))

    assert fits(int(tree["p50"] * 0.98)) <= tw["concurrency_fits"] <= fits(tree["max"])
    (line,) = [s for s in tw["advice"] if "--concurrency" in s and "stopwaitsecs" not in s]
    assert f"holds --concurrency {tw['concurrency_fits']} per taskworker" in line
    assert "higher values increase memory usage" in line
    print(f"\ntaskworker: children {child}, tree {tree}, host {host}, advice {tw['advice']}")
