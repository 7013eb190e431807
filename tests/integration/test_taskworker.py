"""`children = auto` on a real taskbroker-client TaskWorker under a real supervisord: Sentry's
`sentry run taskworker --concurrency=3` (a stand-in `sentry` script that starts the real
TaskWorker in push mode: 3 spawned children and multiprocessing's resource tracker), next to a
plain multiprocessing Pool (spawn) whose command line says nothing. Tasks come from a stand-in
broker speaking taskbroker's gRPC protocol (tests.taskbroker_standin), which re-delivers a task
whose status has not come by its processing deadline + 3 s, as taskbroker does.

What happens to tasks when a child over its limit makes the listener restart the program
(taskbroker-client 0.20.30, what `.[test]` installs; measured on this 2-core machine, alone
and with -n 6 next to test_granian, the same to 0.3 s):

- supervisord's SIGTERM reaches the parent and, with stopasgroup, the children: a 0.20.x child
  catches SIGTERM and finishes the task it runs; the parent (which acts on its SIGTERM within
  its 0.5 s poll) then terminates its children and joins them one after another, 5 s each
  (WORKER_CHILD_JOIN_TIMEOUT_SEC), SIGKILLing a child still running.
- a task in another child that ends inside that window completes and is reported: not lost
  (here: reported 1.1 s after the restart decision).
- the task running in the child over its limit, and any task that outlives the window, is
  killed with its child: no status; the broker re-delivers it after processing_deadline + 3 s
  and it runs again from the start in a new child (here 24 s after the decision, with a 20 s
  deadline; an `at_most_once` task would be dropped by taskbroker instead).
- the program is down from the restart decision until its new parent runs: the joins (10.0 s
  with two tasks cut; 5 s per child still running, at most 5 s x concurrency) plus the new
  parent's start: RUNNING again 11.3-11.7 s after the decision, a new task done at 12.4 s.

A child that exits in the parent's first 0.5 s gets a replacement spawned, then stopped at once.

taskbroker-client 26.5.0 (run in a venv of its own; it needs redis 3.5.x, which breaks Celery's
redis transport): its children keep Python's default SIGTERM, so the stop kills all of them at
once: every in-flight task, the finishing one too, is lost and re-delivered after its deadline
(23 s after the decision); the program is RUNNING again 1.5 s after the decision. The test
asserts each generation's fates (CHILDREN_FINISH).
The figures of a run are printed (pytest -s shows them)."""

from __future__ import annotations

import importlib
import json
import shutil
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from listener.core.model import ProcessInfo
from listener.core.servers import Server, recognise
from listener.host.procfs import ProcReader, children_map, descendants
from listener.host.recognition import Recogniser
from tests.harness import PY, ROOT, Supervisord, free_port, short_dir, value, wait_for

pytest.importorskip("taskbroker_client")
pytest.importorskip("sentry_protos")
pytest.importorskip("grpc")

from tests.taskbroker_standin import Broker  # noqa: E402  (needs grpc and sentry_protos)
from tests.taskworker_app import APP_NAME, NAMESPACE  # noqa: E402

# what a child does with SIGTERM: 0.20.x children (what `.[test]` installs) catch it and finish
# their task; 26.5.0's (April 2026, still pip's "newest" without the redis pin) die at once
CHILDREN_FINISH = hasattr(importlib.import_module("taskbroker_client.worker.worker"),
                          "PushTaskWorker")

MiB = 2**20
BLOAT_MB = 200  # a taskworker child holds 30-50 MiB PSS at rest here; the limit sits between
LIMIT = "150MB"
DEADLINE = 20  # s: a cut task is killed ~13 s after it started at worst, and re-delivered at 23
TASKWORKER, POOL = "taskworker:taskworker", "pool:pool"

STANDIN = """\
#!{py}
# Stand-in for `sentry` (tests only): `sentry run taskworker ...` starts a real TaskWorker
import sys
sys.path.insert(0, {root!r})
from tests.taskworker_app import main
if __name__ == "__main__":  # spawned children import this script again, as __mp_main__
    sys.exit(main(sys.argv[1:]))
"""

POOL_JOB = """\
import multiprocessing, signal
if __name__ == "__main__":
    pool = multiprocessing.get_context("spawn").Pool(2)
    signal.pause()
"""


@dataclass
class Stack:
    sv: Supervisord
    broker: Broker
    root: Path

    def tasklog(self) -> list[list[str]]:
        path = self.root / "tasks.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def pid_of(self, event: str, tag: str, after: float = 0.0) -> int | None:
        """The pid that logged `event` for the task tagged `tag` (the latest after `after`)."""
        found = [int(f[1]) for f in self.tasklog() if f[2] == event and f[4] == tag
                 and float(f[0]) > after]
        return found[-1] if found else None

    def release(self, tag: str) -> None:
        (self.root / f"release-{tag}").touch()

    def worker_log(self) -> str:
        path = self.root / "taskworker.log"
        return path.read_text(errors="replace") if path.exists() else ""


def tree(pid: int) -> tuple[set[int], set[int]]:
    """A parent's children: (workers, multiprocessing helpers)."""
    workers, helpers = set(), set()
    for child in psutil.Process(pid).children():
        argv = " ".join(child.cmdline())
        (helpers if "multiprocessing.resource_tracker" in argv else workers).add(child.pid)
    return workers, helpers


def full_tree(pid: int, workers: int) -> bool:
    found = tree(pid)
    return len(found[0]) == workers and len(found[1]) == 1


def completes(broker: Broker, tag: str, log: Path, timeout: float = 60) -> str:
    """Push a `mark` task; its id once the worker reported it complete."""
    task_id = broker.push("mark", tag=tag)
    wait_for(lambda: broker.status(task_id) == "complete", timeout, what=f"task {tag} complete",
             log=log)
    return task_id


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    root = short_dir("mwtw-")
    (root / "bin").mkdir()
    sentry = root / "bin" / "sentry"
    sentry.write_text(STANDIN.format(py=PY, root=str(ROOT)))
    sentry.chmod(0o755)
    (root / "pool_job.py").write_text(POOL_JOB)
    broker_port, worker_port = free_port(), free_port()
    broker = Broker(broker_port, f"127.0.0.1:{worker_port}", NAMESPACE, APP_NAME)
    options = (f"--rpc-host=127.0.0.1:{broker_port} --grpc-port={worker_port} "
               "--max-child-task-count=10000")  # self-hosted's, where tasks are pushed
    sv = None
    try:
        sv = Supervisord(textwrap.dedent(f"""
            [program:taskworker]
            command={sentry} run taskworker --concurrency=3 {options}
            environment=TASKWORKER_TEST_DIR="{root}"
            stopasgroup=true
            killasgroup=true
            stopwaitsecs=60
            startsecs=1
            redirect_stderr=true
            stdout_logfile={root}/taskworker.log

            [program:pool]
            command={PY} {root}/pool_job.py
            stopasgroup=true
            killasgroup=true
            startsecs=1
            """), root)
        pids = sv.wait_running(TASKWORKER, POOL, timeout=60)
        wait_for(lambda: full_tree(pids[TASKWORKER], 3) and full_tree(pids[POOL], 2), 60,
                 interval=0.2, what="3 taskworker children, 2 pool children, their trackers")
        completes(broker, "ready", root / "taskworker.log")  # the TaskWorker takes tasks
        yield Stack(sv, broker, root)
    finally:
        if sv is not None:
            sv.stop()
        broker.close()
        shutil.rmtree(root, ignore_errors=True)


def rules(root: Path) -> Path:
    path = root / "memwatch.conf"
    path.write_text(f"[memwatch]\nmeasure = pss\n\n[any]\nlimit = {LIMIT}\nchildren = auto\n")
    return path


def status(port: int) -> dict[str, dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
        data = json.load(resp)
    return {f"{p['group']}:{p['process']}": p for p in data["processes"]}


def test_recognition_reads_the_live_trees(stack: Stack) -> None:
    """The listener's own recognition on the real processes: the TaskWorker by `sentry run
    taskworker`, the Pool by its spawned children; the resource trackers are helpers. Without
    its name, the TaskWorker's tree alone reads as a multiprocessing pool: judged per child all
    the same."""
    reader = ProcReader()
    table = reader.scan()
    kids = children_map(table)
    infos = [ProcessInfo(n.split(":")[0], n.split(":")[1], stack.sv.pid(n), "RUNNING",
                         table[stack.sv.pid(n)].started) for n in (TASKWORKER, POOL)]
    recogniser = Recogniser(reader)
    found = recogniser.servers(infos, time.time(), lambda: kids, auto={TASKWORKER, POOL})
    assert found == {TASKWORKER: Server.TASKWORKER, POOL: Server.POOL}
    for info in infos:
        trackers = tree(info.pid)[1]
        assert len(trackers) == 1
        units = [(pid, table[pid].started) for pid in descendants(info.pid, kids)]
        assert recogniser.helpers(units) == trackers
    parent = infos[0].pid
    unnamed = [PY, "/srv/run_tasks.py"]
    assert recognise(unnamed, reader.native_modules(parent),
                     [reader.cmdline(c) or [] for c in kids[parent]]) is Server.POOL


def test_a_child_over_its_limit_restarts_the_taskworker_once(stack: Stack, listener,
                                                             short_tmp: Path) -> None:
    sv, broker = stack.sv, stack.broker
    lst = listener("--config", rules(short_tmp), server_url=sv.url)
    lst.tick()
    said = [line for line in lst.stderr().splitlines() if "recognised" in line]
    assert any(f"process={TASKWORKER}" in line and "server=taskworker" in line for line in said)
    assert any(f"process={POOL}" in line and "server=multiprocessing" in line for line in said)
    first = status(lst.metrics_port)
    assert first[TASKWORKER]["strategy"] == "pss, each (auto: taskworker)"
    assert first[POOL]["strategy"] == "pss, each (auto: multiprocessing)"
    parent = sv.pid(TASKWORKER)
    children, trackers = tree(parent)
    samples = lst.metrics()
    # 3 workers judged, the tracker not (it is a 4th descendant)
    assert value(samples, "memwatch_process_children", group="taskworker",
                 process="taskworker") == 3
    assert value(samples, "memwatch_process_children", group="pool", process="pool") == 2
    assert first[TASKWORKER]["memory_pid"] not in trackers | tree(sv.pid(POOL))[1]
    assert first[TASKWORKER]["verdict"] == "ok", first[TASKWORKER]

    # one task grows one child past the limit and stays in flight; two more run in the others
    began = time.time()
    big = broker.push("hold", deadline=DEADLINE, tag="big", mb=BLOAT_MB)
    big_pid = wait_for(lambda: stack.pid_of("grown", "big", began), what="the big task grown")
    finishing = broker.push("hold", deadline=DEADLINE, tag="finishing")
    cut = broker.push("hold", deadline=DEADLINE, tag="cut")
    others = wait_for(lambda: [stack.pid_of("start", t, began) for t in ("finishing", "cut")]
                      if all(stack.pid_of("start", t, began) for t in ("finishing", "cut"))
                      else None, what="two more tasks running")
    assert {big_pid, *others} == children, (big_pid, others, children)

    decided = time.monotonic()
    lst.tick()
    wait_for(lambda: "restarting process over its memory limit" in lst.stderr(),
             what="the restart decided")
    over = status(lst.metrics_port)[TASKWORKER]
    assert over["memory_pid"] == big_pid and over["memory_bytes"] > BLOAT_MB * MiB, over
    finished = None
    if CHILDREN_FINISH:  # the other child finishes its task after it was told to stop
        wait_for(lambda: f"{others[0]} INFO taskbroker_client.worker.workerchild "
                 "taskworker.worker.sigterm_received" in stack.worker_log(),
                 what="the finishing task's child told to stop", log=stack.root / "taskworker.log")
        stack.release("finishing")
        wait_for(lambda: broker.status(finishing) == "complete", what="the finishing task reported")
        finished = time.monotonic() - decided
    cut_tasks = (big, cut) if CHILDREN_FINISH else (big, finishing, cut)

    # the program runs again, with a new parent and new children; restarted once
    new_parent = wait_for(lambda: (lambda i: i["statename"] == "RUNNING" and i["pid"] != parent
                                   and i["pid"])(sv.infos()[TASKWORKER]), 60,
                          what="the taskworker RUNNING again")
    running_again = time.monotonic() - decided
    wait_for(lambda: "restarted" in lst.stderr(), what="the listener's restart done")
    assert not any(psutil.pid_exists(p) for p in children)
    completes(broker, "after", stack.root / "taskworker.log")  # the new TaskWorker works
    works = time.monotonic() - decided
    for tag in ("big", "finishing", "cut"):  # the re-runs need not hold
        stack.release(tag)

    # the tasks cut by the restart: no status, re-delivered after their deadline, run again
    for task_id in cut_tasks:
        wait_for(lambda t=task_id: broker.status(t) == "complete", DEADLINE + 30,
                 what=f"{task_id} re-delivered and complete")
    redelivered = time.monotonic() - decided
    for task_id in cut_tasks:
        kinds = [(e.kind, e.attempt, e.status) for e in broker.of(task_id)]
        assert kinds == [("delivered", 0, ""), ("deadline", 0, ""), ("delivered", 1, ""),
                         ("status", 1, "complete")], (task_id, kinds)
    if CHILDREN_FINISH:
        assert [(e.kind, e.attempt) for e in broker.of(finishing)] == [("delivered", 0),
                                                                       ("status", 0)]
    assert stack.pid_of("start", "big", began) in tree(new_parent)[0]

    lst.tick()
    samples = lst.metrics()
    assert value(samples, "memwatch_restarts_total", group="taskworker", process="taskworker") == 1
    assert value(samples, "memwatch_restarts_total", group="pool", process="pool") == 0
    assert lst.stderr().count("restarting process") == 1
    assert value(samples, "memwatch_process_children", group="taskworker",
                 process="taskworker") == 3
    # the old parent's shutdown: 0.20.x joins its children, 5 s each, and SIGKILLs the two still
    # running; 26.5.0's children die of the SIGTERM at once
    stages = {f[4]: float(f[0]) for f in map(str.split, stack.worker_log().splitlines())
              if len(f) > 4 and f[1] == str(parent) and f[4].startswith("taskworker.worker.shutdown")}
    joins = stages["taskworker.worker.shutdown.result"] - stages["taskworker.worker.shutdown.children"]
    if CHILDREN_FINISH:
        assert "taskworker.worker.shutdown.children_killed" in stages, stack.worker_log()
        assert 9.5 < joins < 20, joins
    else:
        assert joins < 5, joins
    reported = "never" if finished is None else f"{finished:.1f}s after the decision"
    print(f"\ntaskworker restart ({'0.20.x' if CHILDREN_FINISH else '26.5.0'}): finishing task "
          f"reported {reported}, parent's joins {joins:.1f}s, RUNNING again "
          f"{running_again:.1f}s, a new task done {works:.1f}s, cut tasks re-run and done "
          f"{redelivered:.1f}s")
