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
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from tests.harness import free_port as free_port  # the deploy tests take it from here

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

T = TypeVar("T")


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


def wait_for(
    check: Callable[[], T | None],
    what: str,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> T:
    """Call `check` until it returns something other than None/False, or fail at the deadline.

    Exceptions raised by `check` count as "not yet". If `proc` exits meanwhile, fail at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
        except Exception as exc:  # any failure means "not ready yet"
            last_error = exc
        else:
            if result is not None and result is not False:
                return result
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}{log_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what} (last error: {last_error!r}){log_tail(log)}")
        time.sleep(0.05)


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


def log_tail(log: Path | None, lines: int = 30) -> str:
    """The end of a program's log, to explain a failure."""
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- {log} (last {len(tail)} lines) ---\n" + "\n".join(tail)


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
