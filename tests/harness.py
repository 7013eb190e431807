"""Real parts for the integration tests and the benchmarks: a supervisord in a temp dir, stand-in
programs that really allocate memory, the listener driven over its real stdin/stdout (the caller
plays supervisord's side of the event protocol) or built in this process with a short retry
timing, /metrics over HTTP, and the one wait_for."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import psutil
from prometheus_client.parser import text_string_to_metric_families

from listener.app import Parts, build
from listener.config.parse import parse
from listener.core.recovery import RetryTiming
from listener.supervisord.rpc import Supervisor

ROOT = Path(__file__).resolve().parents[1]
HOG = ROOT / "deploy" / "demo" / "hog.py"
PY = sys.executable
T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition", *, proc: subprocess.Popen[bytes] | None = None,
             log: Path | None = None) -> T:
    """Poll until predicate() returns something truthy and return it; fail naming `what` at
    the deadline. An exception from predicate means "not yet", except an AssertionError (a
    check inside it failed: that fails at once). With `proc`, fail at once if it exits; with
    `log`, a failure shows the end of that log."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except AssertionError:
            raise
        except Exception as exc:  # not ready yet: connection refused, not listed yet...
            last = exc
        else:
            if last:
                return cast(T, last)
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: process exited with {proc.returncode}{log_tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                 f"(last: {last!r}){log_tail(log)}")
        time.sleep(interval)


def log_tail(log: Path | None, lines: int = 30) -> str:
    """The end of a program's log, to explain a failure."""
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- {log} (last {len(tail)} lines) ---\n" + "\n".join(tail)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hog(*args: object) -> str:
    """The command line of deploy/demo/hog.py, a stand-in that allocates what it is told."""
    return " ".join([PY, str(HOG), *map(str, args)])


def listener_command(*args: object) -> str:
    return " ".join([PY, "-m", "listener", *map(str, args)])


def program(name: str, command: str, numprocs: int = 1, **options: object) -> str:
    """A [program:x] section of quiet stand-ins; numprocs > 1 makes x_0000, x_0001, ..."""
    settings: dict[str, object] = {
        "command": command, "numprocs": numprocs, "startsecs": 0, "autorestart": "false",
        "stdout_logfile": "NONE", "stderr_logfile": "NONE", "stopasgroup": "true",
        "killasgroup": "true"}
    if numprocs > 1:
        settings["process_name"] = "%(program_name)s_%(process_num)04d"
    settings.update(options)
    return f"[program:{name}]\n" + "".join(f"{k}={v}\n" for k, v in settings.items()) + "\n"


def short_dir(prefix: str = "mw-") -> Path:
    """A temp dir with a short path (unix socket paths are limited to ~100 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class Supervisord:
    """A real supervisord (from this venv) with its own dir and unix socket. Without `root` it
    makes a temp dir and removes it on stop(). stop() ends it and its children. `prefix` runs it
    under another command, e.g. unshare."""

    def __init__(self, sections: str, root: Path | None = None, *, loglevel: str = "info",
                 all_running: bool = False, comm: str | None = None, tree_children: int = 0,
                 start_timeout: float = 600.0, prefix: tuple[str, ...] = ()) -> None:
        self._own_root = root is None
        self.root = root or short_dir("mwb-")
        self.socket = self.root / "s.sock"
        self.log = self.root / "supervisord.log"
        self.conf = self.root / "supervisord.conf"
        fds = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 16384)
        procs = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 16384)
        self.conf.write_text(textwrap.dedent(f"""\
            [unix_http_server]
            file={self.socket}

            [supervisord]
            logfile={self.log}
            pidfile={self.root}/supervisord.pid
            childlogdir={self.root}
            nodaemon=true
            loglevel={loglevel}
            minfds={fds}
            minprocs={procs}

            [rpcinterface:supervisor]
            supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

            [supervisorctl]
            serverurl=unix://{self.socket}

            """) + textwrap.dedent(sections))
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [*prefix, PY, "-m", "supervisor.supervisord", "-c", str(self.conf)], cwd=self.root,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            wait_for(lambda: self.socket.exists() and self.state() == "RUNNING",
                     what="supervisord to run")
            if all_running:
                self.wait_running(timeout=start_timeout)
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
        self.client = Supervisor(self.url, timeout=120)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def rpc(self) -> Any:
        """supervisord's XML-RPC proxy, over the listener's own transport (with a timeout)."""
        return Supervisor(self.url, timeout=120)._proxy

    def state(self) -> str:
        return str(self.rpc().supervisor.getState()["statename"])

    def infos(self) -> dict[str, dict[str, Any]]:
        return {f"{i['group']}:{i['name']}": i for i in self.rpc().supervisor.getAllProcessInfo()}

    def pid(self, namespec: str) -> int:
        return int(self.rpc().supervisor.getProcessInfo(namespec)["pid"])

    def pids(self) -> list[int]:
        return [int(i["pid"]) for i in self.infos().values()]

    def wait_running(self, *namespecs: str, timeout: float = 30.0) -> dict[str, int]:
        """Wait until the processes named (all without names) are RUNNING; their pids."""
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

    def _all_exec(self, comm: str) -> bool:
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != comm:
                        return False
            except OSError:
                return False
        return True

    def _trees_complete(self, children: int) -> bool:
        kids: dict[int, int] = {}
        for p in psutil.process_iter(["ppid"]):
            kids[p.info["ppid"]] = kids.get(p.info["ppid"], 0) + 1
        return all(kids.get(pid, 0) == children for pid in self.pids())

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(300)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


def event_text(eventname: str = "TICK_5", payload: str | None = None, serial: int = 1) -> str:
    """One event as supervisord writes it to a listener: header line, then payload."""
    payload = payload if payload is not None else f"when:{int(time.time())}"
    return (f"ver:3.0 server:supervisor serial:{serial} pool:memwatch poolserial:{serial} "
            f"eventname:{eventname} len:{len(payload)}\n{payload}")


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


class ListenerProcess:
    """`python -m listener` as a child; the caller plays supervisord's side of the protocol.
    metrics_port None picks a free port, 0 serves no metrics. Its state dir and stderr go to
    `root` (a temp dir of its own without one). `prefix` runs it under another command, e.g.
    prlimit."""

    def __init__(self, args: list[str], server_url: str, root: Path | None = None,
                 env: dict[str, str] | None = None, metrics_port: int | None = None,
                 prefix: tuple[str, ...] = (), relay: Relay | None = None) -> None:
        self.relay = relay  # events mode: supervisord's recorded events go first at every tick
        self._own_root = root is None
        self.root = root or short_dir("mwl-")
        self.metrics_port = free_port() if metrics_port is None else metrics_port
        self.stderr_path = self.root / f"listener-{time.monotonic_ns()}.err"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*prefix, PY, "-m", "listener", "--metrics-port", str(self.metrics_port),
             "--state-dir", str(self.root / "state"), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=ROOT,
            env={**os.environ, "SUPERVISOR_SERVER_URL": server_url, "PYTHONPATH": str(ROOT),
                 **(env or {})})
        self._in = cast(IO[bytes], self.proc.stdin)
        self._out = cast(IO[bytes], self.proc.stdout)
        self.ps = psutil.Process(self.proc.pid)
        self.serial = 0
        self.expect_ready()

    def expect_ready(self) -> None:
        line = self._out.readline()
        assert line == b"READY\n", f"expected READY, got {line!r}; stderr: {self.stderr()[-2000:]}"

    def send(self, eventname: str = "TICK_5", payload: str | None = None) -> bytes:
        """Send one event, return the RESULT's body (b'OK' or b'FAIL'); then expect READY."""
        self.serial += 1
        self.write_raw(event_text(eventname, payload, self.serial).encode())
        return self.read_result()

    def tick(self) -> None:
        """Send one TICK and expect OK (in events mode, after the events recorded so far)."""
        if self.relay is not None:
            self.relay.forward(self)
            # the TICK takes the next poolserial, as supervisord would number it; the recorder's
            # next event then carries the same number, which the listener takes for a re-send
            self.serial = self.relay.last_serial
        result = self.send()
        assert result == b"OK", f"expected OK, got {result!r}; stderr: {self.stderr()[-2000:]}"

    def timed_tick(self) -> float:
        """tick(), and the seconds from writing the TICK to reading its RESULT."""
        began = time.perf_counter()
        self.tick()
        return time.perf_counter() - began

    def write_raw(self, data: bytes) -> None:
        self._in.write(data)
        self._in.flush()

    def read_result(self) -> bytes:
        head = self._out.readline()
        assert head.startswith(b"RESULT "), f"expected RESULT, got {head!r}; stderr: {self.stderr()}"
        body = self._out.read(int(head.split()[1]))
        self.expect_ready()
        return body

    def metrics(self) -> Samples:
        return scrape(self.metrics_port)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def kill(self) -> int:
        """End it at once (a restart in flight would make a clean exit wait for it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self.close()

    def close(self) -> int:
        if self.proc.poll() is None:
            self._in.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        self._stderr.close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        return self.proc.returncode


class BuiltListener:
    """The listener as listener.app builds it, in this process, against a real supervisord, with
    the retry path's times given: for rules about time, without waiting production's seconds.
    The test calls tick() where supervisord would send a TICK; restarts run in the listener's
    own worker threads; /metrics is served on a free port; log records go through `logging`."""

    def __init__(self, args: list[str], server_url: str, root: Path, timing: RetryTiming) -> None:
        self.root = root
        self.metrics_port = free_port()
        config = parse([*args, "--server-url", server_url, "--state-dir", str(root / "state"),
                        "--metrics-port", str(self.metrics_port)], environ={})
        self.parts: Parts = build(config, environ={}, retry_timing=timing)

    def tick(self) -> None:
        self.parts.daemon.tick()

    def metrics(self) -> Samples:
        return scrape(self.metrics_port)

    def close(self) -> None:
        self.parts.daemon.stop()
        self.parts.close()


# --- supervisord's real events, recorded and relayed to a listener the test drives ---

RECORDER = """\
import sys, time
out = open(sys.argv[1], "ab", buffering=0)
slow = float(sys.argv[2])
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
while True:
    stdout.write(b"READY\\n"); stdout.flush()
    header = stdin.readline()
    if not header:
        break
    size = int(dict(t.split(b":", 1) for t in header.split())[b"len"])
    payload = stdin.read(size)
    time.sleep(slow)
    out.write(header + payload)
    stdout.write(b"RESULT 2\\nOK"); stdout.flush()
"""


def recorder_section(root: Path, buffer_size: int = 10000, slow: float = 0.0) -> str:
    (root / "recorder.py").write_text(RECORDER)
    return (f"[eventlistener:recorder]\ncommand={sys.executable} {root / 'recorder.py'} "
            f"{root / 'events.bin'} {slow}\nevents=PROCESS_STATE,PROCESS_GROUP\n"
            f"buffer_size={buffer_size}\nstartsecs=0\n\n")


class Relay:
    """Hands the recorded events on to the listener, each answered before the next."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.last_serial = 0  # the poolserial of the last event handed on

    def skip(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def forward(self, lst: ListenerProcess) -> int:
        data = self.path.read_bytes() if self.path.exists() else b""
        sent = 0
        while True:
            end = data.find(b"\n", self.offset)
            if end < 0:
                return sent
            header = data[self.offset:end + 1]
            tokens = dict(t.split(b":", 1) for t in header.split())
            size = int(tokens[b"len"])
            if end + 1 + size > len(data):
                return sent  # the recorder is writing it
            self.last_serial = int(tokens[b"poolserial"])
            lst.write_raw(header + data[end + 1:end + 1 + size])
            assert lst.read_result() == b"OK"
            self.offset = end + 1 + size
            sent += 1
