"""Real parts for integration tests: a supervisord in a temp dir, stand-in programs that
really allocate memory, the listener driven over its real stdin/stdout, /metrics over HTTP."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from listener.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[2]
HOG = ROOT / "deploy" / "demo" / "hog.py"
PY = sys.executable
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> T:
    """Poll until predicate() returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, xmlrpc.client.Error) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hog(*args: object) -> str:
    return " ".join([PY, str(HOG), *map(str, args)])


def listener_command(*args: object) -> str:
    return " ".join([PY, "-m", "listener", *map(str, args)])


class Supervisord:
    """A real supervisord (from the venv) with its own temp dir and unix socket."""

    def __init__(self, sections: str, root: Path) -> None:
        self.root = root
        self.socket = root / "s.sock"
        self.log = root / "supervisord.log"
        self.conf = root / "supervisord.conf"
        self.conf.write_text(textwrap.dedent(f"""\
            [unix_http_server]
            file={self.socket}

            [supervisord]
            logfile={self.log}
            pidfile={root}/supervisord.pid
            childlogdir={root}
            nodaemon=true
            loglevel=info

            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

            [supervisorctl]
            serverurl=unix://{self.socket}
            """) + textwrap.dedent(sections))
        self.proc = subprocess.Popen(
            [PY, "-m", "supervisor.supervisord", "-c", str(self.conf)],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        wait_for(lambda: self.socket.exists() and self.rpc().supervisor.getState()["statename"]
                 == "RUNNING", what="supervisord to run")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def rpc(self) -> Any:
        return Supervisor(self.url)._proxy  # the listener's own transport, with a timeout

    def infos(self) -> dict[str, dict[str, Any]]:
        return {f"{i['group']}:{i['name']}": i for i in self.rpc().supervisor.getAllProcessInfo()}

    def pid(self, namespec: str) -> int:
        return int(self.rpc().supervisor.getProcessInfo(namespec)["pid"])

    def wait_running(self, *namespecs: str, timeout: float = 30.0) -> dict[str, int]:
        def all_running() -> dict[str, int] | None:
            infos = self.infos()
            wanted = namespecs or tuple(infos)
            if all(infos[n]["statename"] == "RUNNING" for n in wanted):
                return {n: int(infos[n]["pid"]) for n in wanted}
            return None
        return wait_for(all_running, timeout, what=f"{namespecs or 'all'} RUNNING")

    def wait_allocated(self, min_mb: dict[str, float], timeout: float = 30.0) -> dict[str, int]:
        """Wait until each process runs and its RSS has reached the MiB given (stand-ins
        allocate right after start, so RUNNING alone does not mean the memory is there)."""
        def ready() -> dict[str, int] | None:
            pids = self.wait_running(*min_mb, timeout=timeout)
            for namespec, mb in min_mb.items():
                try:
                    if psutil.Process(pids[namespec]).memory_info().rss < mb * 2**20:
                        return None
                except psutil.NoSuchProcess:
                    return None
            return pids
        return wait_for(ready, timeout, what=f"memory allocated in {sorted(min_mb)}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path (unix socket paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mw-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def supervisord(short_tmp: Path) -> Iterator[Callable[[str], Supervisord]]:
    started: list[Supervisord] = []

    def start(sections: str) -> Supervisord:
        sv = Supervisord(sections, short_tmp)
        started.append(sv)
        return sv

    yield start
    for sv in started:
        sv.stop()


class Listener:
    """The listener as a child of the test, which plays supervisord's side of the protocol."""

    def __init__(self, args: list[str], server_url: str, root: Path,
                 env: dict[str, str] | None = None) -> None:
        self.stderr_path = root / f"listener-{time.monotonic_ns()}.err"
        self.metrics_port = free_port()
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PY, "-m", "listener", "--metrics-port", str(self.metrics_port),
             "--state-dir", str(root / "state"), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            env={**os.environ, "SUPERVISOR_SERVER_URL": server_url, "PYTHONPATH": str(ROOT),
                 **(env or {})})
        self.serial = 0
        self.expect_ready()

    def expect_ready(self) -> None:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line == b"READY\n", f"expected READY, got {line!r}; stderr: {self.stderr()}"

    def send(self, eventname: str = "TICK_5", payload: str | None = None) -> bytes:
        """Send one event, return the RESULT's body (b'OK' or b'FAIL'); then expect READY."""
        self.serial += 1
        payload = payload if payload is not None else f"when:{int(time.time())}"
        header = (f"ver:3.0 server:supervisor serial:{self.serial} pool:memwatch "
                  f"poolserial:{self.serial} eventname:{eventname} len:{len(payload)}\n")
        self.write_raw((header + payload).encode())
        return self.read_result()

    def write_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def read_result(self) -> bytes:
        out = self.proc.stdout  # type: ignore[union-attr]
        head = out.readline()
        assert head.startswith(b"RESULT "), f"expected RESULT, got {head!r}; stderr: {self.stderr()}"
        body = out.read(int(head.split()[1]))
        self.expect_ready()
        return body

    def tick(self) -> None:
        assert self.send() == b"OK"

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return scrape(self.metrics_port)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode


@pytest.fixture
def listener(short_tmp: Path) -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def start(*args: object, server_url: str, env: dict[str, str] | None = None) -> Listener:
        lst = Listener([str(a) for a in args], server_url, short_tmp, env)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, scheme: str = "http") -> Samples:
    """GET /metrics over HTTP and index every sample by (name, sorted labels)."""
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))
