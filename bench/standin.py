"""Stand-ins: tiny programs for supervisord to run by the hundred, and a local XML-RPC stand-in
for supervisord itself (section 6)."""

from __future__ import annotations

import re
import socketserver
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from typing import Any

from listener.core.model import ProcessInfo
from listener.core.servers import Server, is_helper
from listener.host.procfs import ProcReader, children_map
from listener.host.recognition import Recogniser
from tests.harness import PY, ROOT, wait_for

# Tiny stand-ins keep hundreds of processes cheap: `sleep` is ~1.5 MiB RSS (mostly shared libc).
FLAT_COMMAND = "sleep infinity"
FLAT_COMM = "sleep"
TREE_CHILDREN = 4
# A prefork master with 4 children: dash forks 4 sleeps and waits for them.
TREE_COMMAND = "sh -c '" + " & ".join(["sleep infinity"] * TREE_CHILDREN) + " & wait'"
TREE_COMM = "sh"
# Mixed (one listener, `children = auto`, a rule per group): a fifth of the programs each. Three
# are the trees under bash: one whose command line reads as a uWSGI master, one as a Celery
# worker (bash's `exec -a` sets argv[0]), one plain. Two are today's Sentry (bench/sentry.py):
# `sentry run web` mapping Granian's native module with 4 forked workers, and `sentry run
# taskworker` with 4 spawned children and multiprocessing's resource tracker.
_TREE_SCRIPT = " & ".join(["sleep infinity"] * TREE_CHILDREN) + " & wait"
_SENTRY = f"{PY} {ROOT / 'bench' / 'sentry.py'} run"
MIXED_COMMANDS = {
    "uwsgi": f"bash -c 'exec -a uwsgi bash -c \"{_TREE_SCRIPT}\" --master'",
    "celery": f"bash -c 'exec -a celery bash -c \"{_TREE_SCRIPT}\" worker'",
    "granian": f"{_SENTRY} web --workers={TREE_CHILDREN}",
    "taskworker": f"{_SENTRY} taskworker --concurrency={TREE_CHILDREN}",
    "plain": f"bash -c '{_TREE_SCRIPT}'",
}
# what the listener must find each group's master to run (plain's rule is not `auto`)
MIXED_SERVERS = {"uwsgi": Server.UWSGI, "celery": Server.CELERY, "granian": Server.GRANIAN,
                 "taskworker": Server.TASKWORKER, "plain": Server.PLAIN}
# multiprocessing's helpers in each master's tree: the taskworker's resource tracker
MIXED_HELPERS = {"taskworker": 1}


def mixed_counts(n: int) -> dict[str, int]:
    """N programs split in fifths; plain takes what is left over."""
    fifth = n // len(MIXED_COMMANDS)
    return {group: fifth for group in MIXED_COMMANDS} | {"plain": n - 4 * fifth}


def mixed_problems(processes: Sequence[ProcessInfo]) -> list[str]:
    """What is not yet as the mixed shape wants it: every master recognised by the listener's
    own Recogniser as its group's server, with its workers and helpers all started. Empty:
    ready."""
    reader = ProcReader()
    kids = children_map(reader.scan())
    auto = {p.namespec for p in processes if p.group != "plain"}
    found = Recogniser(reader).servers(processes, time.time(), lambda: kids, auto)
    problems = []
    for proc in processes:
        if found[proc.namespec] is not MIXED_SERVERS[proc.group]:
            problems.append(f"{proc.namespec} reads as {found[proc.namespec].value}")
        argvs = [reader.cmdline(child) or [] for child in kids.get(proc.pid, ())]
        helpers = sum(map(is_helper, argvs))
        if (len(argvs) - helpers, helpers) != (TREE_CHILDREN, MIXED_HELPERS.get(proc.group, 0)):
            problems.append(f"{proc.namespec} has {len(argvs)} children, {helpers} helpers")
    return problems


def wait_mixed(processes: Callable[[], Sequence[ProcessInfo]], timeout: float = 600.0) -> None:
    """Wait until mixed_problems() finds none; at the deadline, say what it still found."""
    last: list[str] = []

    def ready() -> bool:
        last[:] = mixed_problems(processes())
        return not last
    try:
        wait_for(ready, timeout, interval=0.5, what="every mixed master recognised, its tree complete")
    except AssertionError as exc:
        more = f" and {len(last) - 5} more" if len(last) > 5 else ""
        raise AssertionError(f"{exc}: {'; '.join(last[:5])}{more}") from None

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
