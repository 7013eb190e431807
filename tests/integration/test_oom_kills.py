"""Real OOM kills, made in a memory cgroup of our own (cgroup v1, as root) so that the rest of the
machine is never touched: a supervised process, a worker of a pre-fork tree, and the victim the
kernel picks between two processes when a rule raises one's oom_score_adj. Each kill must be
said by the listener (one log line naming the program, the pid and its memory at the kill),
counted in memwatch_oom_kills_total and shown by /status and the page."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import ListenerProcess, Supervisord, hog, program, value, wait_for

CGROUP_V1 = Path("/sys/fs/cgroup/memory")
MiB = 2**20
KILLED = "killed by the kernel's OOM killer"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (CGROUP_V1 / "cgroup.procs").exists(),
    reason="needs root and the cgroup v1 memory controller")


@pytest.fixture
def cgroup() -> Iterator[Callable[[int], Path]]:
    """Memory cgroups with a limit (MiB); their processes are killed and the cgroups removed at
    the end of the test."""
    made: list[Path] = []

    def make(limit_mb: int) -> Path:
        path = CGROUP_V1 / f"memwatch-test-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        made.append(path)
        (path / "memory.limit_in_bytes").write_text(str(limit_mb * MiB))
        return path

    yield make
    for path in made:
        def emptied(path: Path = path) -> bool:
            for pid in (path / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            return not (path / "cgroup.procs").read_text().strip()
        wait_for(emptied, 30, what=f"{path} empty")
        wait_for(lambda path=path: _rmdir(path), 30, what=f"{path} removed")


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except OSError:
        return False
    return True


def in_cgroup(path: Path, command: str) -> str:
    """A command that joins the cgroup, then runs `command` with its address space capped (a
    stand-in that escaped the cgroup still could not take the machine's memory)."""
    return (f'/bin/sh -c "echo $$ > {path}/cgroup.procs && exec prlimit --as={1024 * MiB} '
            f'{command}"')


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def said(lst: ListenerProcess, *parts: str) -> str | None:
    """The listener's log line that holds every part, after one more tick."""
    lst.tick()
    return next((line for line in lst.stderr().splitlines()
                 if all(p in line for p in parts)), None)


def status(lst: ListenerProcess) -> dict[str, dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{lst.metrics_port}/status", timeout=10) as r:
        answer = json.load(r)
    return {f"{p['group']}:{p['process']}": p for p in answer["processes"]} | {"": answer}


def page(lst: ListenerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{lst.metrics_port}/", timeout=10) as r:
        return str(r.read().decode())


def test_a_supervised_process_killed_by_the_oom_killer_is_said_counted_and_restarted(
        supervisord: Callable[[str], Supervisord], listener: Callable[..., ListenerProcess],
        cgroup: Callable[[int], Path]) -> None:
    cg = cgroup(80)
    sv = supervisord(program("victim", in_cgroup(cg, hog("--mb", 20, "--leak-mb-per-sec", 5)),
                             autorestart="true", startsecs=1, autostart="false"))
    lst = listener("-p", "victim=1GB", server_url=sv.url)  # ready before the victim grows
    sv.rpc().supervisor.startProcess("victim", False)
    pid = sv.wait_running("victim:victim")["victim:victim"]
    lst.tick()  # the listener samples it
    wait_for(lambda: gone(pid), 60, what="the victim OOM-killed")
    line = wait_for(lambda: said(lst, KILLED, "process=victim:victim", f"pid={pid}"), 10,
                    what="the kill said")
    assert "memory_at_kill=" in line and "oom=\"memory cgroup\"" in line, line
    assert value(lst.metrics(), "memwatch_oom_kills_total", group="victim",
                 process="victim") == 1
    # supervisord restarts it, as autorestart says; the listener did nothing itself
    wait_for(lambda: sv.infos()["victim:victim"]["pid"] not in (0, pid), 30,
             what="victim restarted by supervisord")
    assert value(lst.metrics(), "memwatch_restarts_total", group="victim", process="victim") == 0
    row = status(lst)["victim:victim"]
    assert row["oom_kills"] == 1
    assert row["last_action"]["kind"] == "oom_kills"  # type: ignore[index]
    assert status(lst)[""]["oom_source"] == "kmsg"
    assert "1 OOM-killed" in page(lst)


def test_a_worker_killed_by_the_oom_killer_is_its_programs_and_its_master_survives(
        supervisord: Callable[[str], Supervisord], listener: Callable[..., ListenerProcess],
        cgroup: Callable[[int], Path]) -> None:
    cg = cgroup(150)
    sv = supervisord(program("tree", in_cgroup(cg, hog(
        "--mb", 10, "--children", 2, "--child-mb", 10, "--grow-child", 0,
        "--leak-mb-per-sec", 10)), autostart="false"))
    lst = listener("-p", "tree=1GB,children=each", server_url=sv.url)
    sv.rpc().supervisor.startProcess("tree", False)
    master = sv.wait_running("tree:tree")["tree:tree"]
    workers = wait_for(lambda: [c.pid for c in psutil.Process(master).children()]
                       if len(psutil.Process(master).children()) == 2 else None,
                       what="two workers")
    lst.tick()
    victim = wait_for(lambda: next((w for w in workers if gone(w)), None), 60,
                      what="a worker OOM-killed")
    line = wait_for(lambda: said(lst, f"worker {KILLED}", "process=tree:tree", f"pid={victim}"),
                    10, what="the worker's kill said")
    assert "memory_at_kill=" in line and "last_sample=" in line, line
    assert value(lst.metrics(), "memwatch_oom_kills_total", group="tree", process="tree") == 1
    # (other tests' kills on this host count in memwatch_host_oom_kills_total: not asserted)
    assert sv.infos()["tree:tree"]["pid"] == master and not gone(master)


@pytest.mark.parametrize("adjusted", [True, False], ids=["small-adjusted", "control"])
def test_the_oom_killer_picks_the_process_whose_rule_raised_its_score(
        supervisord: Callable[[str], Supervisord], listener: Callable[..., ListenerProcess],
        cgroup: Callable[[int], Path], adjusted: bool) -> None:
    """Two processes in one cgroup, `big` (150 MiB) and `small` (50 MiB); a third pushes the
    cgroup over its limit. The kernel kills the largest, `big`, unless small's rule says
    oom-score-adj=1000: then `small`, which its master or supervisord can replace."""
    cg = cgroup(240)
    sv = supervisord(program("big", in_cgroup(cg, hog("--mb", 150)))
                     + program("small", in_cgroup(cg, hog("--mb", 50)))
                     + program("pusher", in_cgroup(cg, hog("--mb", 50)), autostart="false"))
    pids = sv.wait_allocated({"big:big": 150, "small:small": 50})
    rule = "small=1GB,oom-score-adj=1000" if adjusted else "small=1GB"
    lst = listener("-p", "big=1GB", "-p", rule, server_url=sv.url)
    lst.tick()
    score = Path(f"/proc/{pids['small:small']}/oom_score_adj").read_text().strip()
    assert score == ("1000" if adjusted else "0")
    sv.rpc().supervisor.startProcess("pusher", False)
    victim, survivor = ("small", "big") if adjusted else ("big", "small")
    wait_for(lambda: gone(pids[f"{victim}:{victim}"]), 60, what=f"{victim} OOM-killed")
    wait_for(lambda: said(lst, KILLED, f"process={victim}:{victim}",
                          f"pid={pids[f'{victim}:{victim}']}"), 10, what="the kill said")
    assert not gone(pids[f"{survivor}:{survivor}"])
    samples = lst.metrics()
    assert value(samples, "memwatch_oom_kills_total", group=victim, process=victim) == 1
    assert value(samples, "memwatch_oom_kills_total", group=survivor, process=survivor) == 0
