"""Real parts: a supervisord in a temp dir with tiny stand-in programs, the listener as a child
process driven over its stdin/stdout, and a local XML-RPC stand-in for the soak."""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import psutil

from listener.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[1]
HOG = ROOT / "deploy" / "demo" / "hog.py"
PY = sys.executable
T = TypeVar("T")

# Tiny stand-ins keep hundreds of processes cheap: `sleep` is ~1.5 MiB RSS (mostly shared libc).
FLAT_COMMAND = "sleep infinity"
FLAT_COMM = "sleep"
TREE_CHILDREN = 4
# A prefork master with 4 children: dash forks 4 sleeps and waits for them.
TREE_COMMAND = "sh -c '" + " & ".join(["sleep infinity"] * TREE_CHILDREN) + " & wait'"
TREE_COMM = "sh"


def wait_for(predicate: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.1,
             what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, xmlrpc.client.Error) as exc:
            last = exc
        else:
            if last:
                return cast(T, last)
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def program(name: str, command: str, numprocs: int = 1, **options: object) -> str:
    """A [program:x] section; numprocs > 1 makes x_0000, x_0001, ..."""
    settings: dict[str, object] = {
        "command": command, "numprocs": numprocs, "startsecs": 0, "autorestart": "false",
        "stdout_logfile": "NONE", "stderr_logfile": "NONE", "stopasgroup": "true",
        "killasgroup": "true"}
    if numprocs > 1:
        settings["process_name"] = "%(program_name)s_%(process_num)04d"
    settings.update(options)
    return f"[program:{name}]\n" + "".join(f"{k}={v}\n" for k, v in settings.items()) + "\n"


class Supervisord:
    """A real supervisord with its own temp dir and unix socket; stop() ends it and its children."""

    def __init__(self, sections: str, tree_children: int = 0, start_timeout: float = 600.0,
                 comm: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mwb-", dir="/tmp"))
        self.socket = self.root / "s.sock"
        self.conf = self.root / "supervisord.conf"
        self.conf.write_text(textwrap.dedent(f"""\
            [unix_http_server]
            file={self.socket}

            [supervisord]
            logfile={self.root}/supervisord.log
            pidfile={self.root}/supervisord.pid
            childlogdir={self.root}
            nodaemon=true
            loglevel=warn
            minfds={min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 16384)}
            minprocs={min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 16384)}

            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

            """) + sections)
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [PY, "-m", "supervisor.supervisord", "-c", str(self.conf)], cwd=self.root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self.client = wait_for(self._connected, 30, what="supervisord to answer")
            wait_for(self._all_running, start_timeout, interval=0.5, what="all programs RUNNING")
            if comm:  # RUNNING with startsecs=0 can still be supervisord's fork before exec
                wait_for(lambda: self._all_exec(comm), start_timeout, interval=0.5,
                         what=f"every program to run {comm}")
            if tree_children:
                wait_for(lambda: self._trees_complete(tree_children), start_timeout, interval=0.5,
                         what=f"every master to have {tree_children} children")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _connected(self) -> Supervisor | None:
        if not self.socket.exists():
            return None
        client = Supervisor(self.url, timeout=120)
        return client if client.state() == "RUNNING" else None

    def _all_running(self) -> bool | None:
        return all(p.statename == "RUNNING" for p in self.client.processes())

    def _all_exec(self, comm: str) -> bool:
        for p in self.client.processes():
            try:
                with open(f"/proc/{p.pid}/comm") as f:
                    if f.read().strip() != comm:
                        return False
            except OSError:
                return False
        return True

    def wait_running(self, timeout: float = 120.0) -> None:
        wait_for(self._all_running, timeout, what="all programs RUNNING")

    def _trees_complete(self, children: int) -> bool | None:
        kids: dict[int, int] = {}
        for p in psutil.process_iter(["ppid"]):
            ppid = p.info["ppid"]
            kids[ppid] = kids.get(ppid, 0) + 1
        return all(kids.get(p.pid, 0) == children for p in self.client.processes())

    def pids(self) -> list[int]:
        return [p.pid for p in self.client.processes()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(300)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def tick_event(serial: int = 1, when: int | None = None) -> str:
    payload = f"when:{int(time.time()) if when is None else when}"
    return (f"ver:3.0 server:supervisor serial:{serial} pool:memwatch poolserial:{serial} "
            f"eventname:TICK_5 len:{len(payload)}\n{payload}")


class ListenerProcess:
    """`python -m listener` as a child; this process plays supervisord's side of the protocol."""

    def __init__(self, args: list[str], server_url: str, metrics_port: int = 0) -> None:
        self.metrics_port = metrics_port
        self.stderr_file = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PY, "-m", "listener", "--metrics-port", str(metrics_port), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr_file, cwd=ROOT,
            env={**os.environ, "SUPERVISOR_SERVER_URL": server_url, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin
        self._out = self.proc.stdout
        self.ps = psutil.Process(self.proc.pid)
        self.serial = 0
        self._expect(b"READY\n")

    def _expect(self, token: bytes) -> None:
        line = self._out.readline()
        if line != token:
            raise RuntimeError(f"expected {token!r}, got {line!r}; stderr: {self.stderr()[-2000:]}")

    def tick(self) -> float:
        """Send one TICK; return seconds from writing it to reading its RESULT (then READY)."""
        self.serial += 1
        data = tick_event(self.serial).encode()
        began = time.perf_counter()
        self._in.write(data)
        self._in.flush()
        head = self._out.readline()
        body = self._out.read(int(head.split()[1])) if head.startswith(b"RESULT ") else b""
        elapsed = time.perf_counter() - began
        if body != b"OK":
            raise RuntimeError(f"expected RESULT OK, got {head!r} {body!r}: {self.stderr()[-2000:]}")
        self._expect(b"READY\n")
        return elapsed

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stderr(self) -> str:
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def kill(self) -> None:
        """End it at once (a restart in flight would make a clean exit wait for it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self._in.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self.stderr_file.close()


class _RpcHandler(socketserver.StreamRequestHandler):
    server: StandInServer

    def handle(self) -> None:
        while True:  # HTTP/1.1 keep-alive, as the listener's transport uses it
            request_line = self.rfile.readline()
            if not request_line:
                return
            length = 0
            while True:
                header = self.rfile.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = self.rfile.read(length)
            payload = self.server.answer(body)
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
            self.wfile.flush()


class StandInServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A local XML-RPC server answering like supervisord from a snapshot of its process list
    (the listed pids are real, so the listener samples real processes). getAllProcessInfo is
    marshalled once: this server costs far less per call than supervisord's own event loop."""

    daemon_threads = True

    def __init__(self, path: str, infos: list[dict[str, Any]]) -> None:
        super().__init__(path, _RpcHandler)
        self.infos = {f"{i['group']}:{i['name']}": i for i in infos}
        self._all = self._response(infos)
        self.calls = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def _response(value: Any) -> bytes:
        return xmlrpc.client.dumps((value,), methodresponse=True, allow_none=True).encode()

    def answer(self, body: bytes) -> bytes:
        self.calls += 1
        match = re.search(rb"<methodName>([^<]*)</methodName>", body)
        method = match.group(1).decode() if match else ""
        if method == "supervisor.getAllProcessInfo":
            return self._all
        if method == "supervisor.getState":
            return self._response({"statecode": 1, "statename": "RUNNING"})
        if method == "supervisor.getProcessInfo":
            params, _ = xmlrpc.client.loads(body)
            name = str(params[0])
            if name in self.infos:
                return self._response(self.infos[name])
            fault = xmlrpc.client.Fault(10, f"BAD_NAME: {name}")
        else:
            fault = xmlrpc.client.Fault(1, f"UNKNOWN_METHOD: {method}")
        return xmlrpc.client.dumps(fault, methodresponse=True).encode()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
