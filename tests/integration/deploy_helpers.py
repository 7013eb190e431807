"""Small helpers shared by the tests of deploy/ (nginx, Redis, Prometheus).

Every test starts the real program on free loopback ports in a temporary directory, waits for
it by polling with a deadline, and stops it (and its children) when done.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

# the deploy tests take these from here
from tests.harness import free_port as free_port
from tests.harness import log_tail as log_tail
from tests.harness import wait_for as wait_for

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def require_binary(name: str, hint: str) -> str:
    """Path of the program `name`, or skip the test saying how to install it.

    Besides PATH, look next to this Python (a virtualenv's bin/, where pyuwsgi puts `uwsgi`
    even when the virtualenv is not activated) and in /usr/sbin (nginx, for non-root users).
    """
    path = shutil.which(name) or shutil.which(
        name, path=os.pathsep.join([str(Path(sys.executable).parent), "/usr/sbin", "/sbin"])
    )
    if path is None:
        pytest.skip(f"{name} not found on PATH ({hint})")
    return path


def port_accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start(cmd: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `cmd` in its own process group with stdout and stderr going to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL the process group that `start` created."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    # Children left behind by a killed parent share its process group (its pid).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def session_processes(sid: int) -> list[int]:
    """Pids of the live processes of session `sid`, the test's own child included.

    A program started with start_new_session=True leads a session of its own; supervisord puts
    each of its children in a process group of its own (so killpg on supervisord's group misses
    them), but they all stay in that session, orphans included.
    """
    pids = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                pids.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL every process left in session `sid` (cleanup after a failed test)."""
    for pid in session_processes(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
