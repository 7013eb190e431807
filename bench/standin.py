"""Stand-ins: tiny programs for supervisord to run by the hundred, and a local XML-RPC stand-in
for supervisord itself (section 6)."""

from __future__ import annotations

import re
import socketserver
import threading
import xmlrpc.client
from typing import Any

# Tiny stand-ins keep hundreds of processes cheap: `sleep` is ~1.5 MiB RSS (mostly shared libc).
FLAT_COMMAND = "sleep infinity"
FLAT_COMM = "sleep"
TREE_CHILDREN = 4
# A prefork master with 4 children: dash forks 4 sleeps and waits for them.
TREE_COMMAND = "sh -c '" + " & ".join(["sleep infinity"] * TREE_CHILDREN) + " & wait'"
TREE_COMM = "sh"
# Mixed rules (one listener, `children = auto`): the same trees under bash, a third whose command
# line reads as a uWSGI master, a third as a Celery worker (bash's `exec -a` sets argv[0]), a
# third plain; each group has its own rule.
_TREE_SCRIPT = " & ".join(["sleep infinity"] * TREE_CHILDREN) + " & wait"
MIXED_COMMANDS = {
    "web": f"bash -c 'exec -a uwsgi bash -c \"{_TREE_SCRIPT}\" --master'",
    "worker": f"bash -c 'exec -a celery bash -c \"{_TREE_SCRIPT}\" worker'",
    "plain": f"bash -c '{_TREE_SCRIPT}'",
}
MIXED_COMM = "bash"

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
