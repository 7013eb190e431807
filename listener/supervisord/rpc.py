"""supervisord's XML-RPC API over http:// or unix://, with a timeout on every call.

supervisor's own SupervisorTransport has no timeout, so a supervisord that accepts and never
answers would hang the listener forever; this transport sets one and drops the connection
after any error so the next call starts clean. One client per thread (http.client is not
thread-safe): the actuator makes its own.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import http.client
import socket
import time
import urllib.parse
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

from listener.core.model import ProcessInfo
from listener.core.text import quoted, redact_url
from listener.supervisord.fastxml import fast_struct_array
from listener.web.client import Deadline, DeadlineConnection, DeadlineSocket, Refused, read_body


class Fault(enum.IntEnum):
    """The codes of supervisor.xmlrpc.Faults that the listener tells apart."""

    SHUTDOWN_STATE = 6  # supervisord is shutting down (or reloading)
    BAD_NAME = 10  # no such process (removed by a reread/update)
    ABNORMAL_TERMINATION = 40  # a stop that ended badly
    SPAWN_ERROR = 50  # a start that failed
    ALREADY_STARTED = 60
    NOT_RUNNING = 70


# Faults that are normal races, not failures: the process already is where we want it,
# or was removed by a reread/update.
RACE_FAULTS = frozenset({Fault.BAD_NAME, Fault.ALREADY_STARTED, Fault.NOT_RUNNING})

MAX_ANSWER_BYTES = 256 * 2**20  # getAllConfigInfo of 10,000 processes is about 20 MB
SupervisorError = (OSError, xmlrpc.client.Error, http.client.HTTPException)


class _UnixHTTPConnection(DeadlineConnection):
    def __init__(self, path: str, deadline: Deadline) -> None:
        super().__init__("localhost", None, deadline)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.deadline.left())
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = DeadlineSocket(sock, self.deadline)


class TimeoutTransport(xmlrpc.client.Transport):
    """Each call ends within `timeout` seconds in all, its answer at most MAX_ANSWER_BYTES."""

    accept_gzip_encoding = False  # supervisord never compresses; the answer is read bounded

    def __init__(self, server_url: str, username: str | None, password: str | None,
                 timeout: float) -> None:
        super().__init__()
        self.server_url = server_url
        self.timeout = timeout
        self._deadline = Deadline(timeout)  # restarted by each call
        self._auth: str | None = None
        if username is not None and password is not None:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._auth = f"Basic {token}"
        if server_url.startswith("unix://"):
            self._target: tuple[str, Any] = ("unix", server_url[len("unix://"):])
        elif server_url.startswith("http://"):
            parsed = urllib.parse.urlsplit(server_url)
            self._target = ("http", (parsed.hostname or "localhost", parsed.port or 80))
        else:
            raise ValueError(f"unsupported supervisord URL {redact_url(server_url)!r} "
                             "(use unix:///path or http://host:port)")

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection[1] is not None:
            return self._connection[1]
        kind, where = self._target
        conn: http.client.HTTPConnection
        if kind == "unix":
            conn = _UnixHTTPConnection(where, self._deadline)
        else:
            conn = DeadlineConnection(where[0], where[1], self._deadline)
        self._connection = (host, conn)
        return conn

    def send_headers(self, connection: http.client.HTTPConnection,
                     headers: list[tuple[str, str]]) -> None:
        if self._auth:
            headers = [*headers, ("Authorization", self._auth)]
        super().send_headers(connection, headers)

    def request(self, host: Any, handler: str, request_body: Any, verbose: bool = False) -> Any:
        self._deadline.restart()
        try:
            return super().request(host, handler, request_body, verbose)
        except BaseException:
            self.close()  # a half-read response must not poison the next call
            raise

    def parse_response(self, response: http.client.HTTPResponse) -> Any:
        """As xmlrpc.client's, read bounded, with a fast path for getAllProcessInfo's answer
        (fastxml); an answer that is no XML-RPC (a name with a control character makes
        supervisord write invalid XML) is a ResponseError, one line."""
        try:
            body = read_body(response, MAX_ANSWER_BYTES)
        except Refused as exc:
            raise xmlrpc.client.ResponseError(str(exc)) from None
        fast = fast_struct_array(body)
        if fast is not None:
            return (fast,)
        parser, unmarshaller = self.getparser()
        try:
            parser.feed(body)
            parser.close()
            return unmarshaller.close()
        except xml.parsers.expat.ExpatError as exc:
            raise xmlrpc.client.ResponseError(
                f"invalid XML ({exc}): a program or group name with a control character "
                "makes supervisord write that") from None
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise xmlrpc.client.ResponseError(f"no XML-RPC answer ({quoted(exc, 80)})") from None


def is_race(exc: BaseException) -> bool:
    return isinstance(exc, xmlrpc.client.Fault) and exc.faultCode in RACE_FAULTS


def counts_as_failure(exc: BaseException) -> bool:
    """A fault or a timeout is a failed restart; supervisord shutting down (a reload) or its
    socket being away is not: supervisor_up reports that, and the journal finishes the job."""
    if isinstance(exc, xmlrpc.client.Fault):
        return exc.faultCode != Fault.SHUTDOWN_STATE
    return not isinstance(exc, (ConnectionError, FileNotFoundError))


def describe_error(exc: BaseException) -> str:
    """A one-line description of an RPC failure that never includes credentials."""
    if isinstance(exc, xmlrpc.client.Fault):
        return f"fault {exc.faultCode}: {quoted(exc.faultString)}"
    if isinstance(exc, xmlrpc.client.ResponseError):
        said = exc.args[0] if exc.args else repr(exc)
        return f"an answer that cannot be read: {said}"
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return f"HTTP {exc.errcode} {exc.errmsg}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {quoted(exc)}"


class Supervisor:
    """The calls the listener makes, returning plain values."""

    def __init__(self, server_url: str, username: str | None = None, password: str | None = None,
                 timeout: float = 10.0) -> None:
        self.server_url = server_url
        transport = TimeoutTransport(server_url, username, password, timeout)
        # the URL given to ServerProxy is a placeholder: the transport knows where to connect
        self._proxy: Any = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport,
                                                allow_none=True)

    @property
    def display_url(self) -> str:
        return redact_url(self.server_url)

    def processes(self) -> list[ProcessInfo]:
        infos = self._proxy.supervisor.getAllProcessInfo()
        listed_at = boot_clock()
        with _malformed("getAllProcessInfo"):
            return [to_process_info(i, listed_at) for i in infos]

    def process(self, namespec: str) -> ProcessInfo:
        info = self._proxy.supervisor.getProcessInfo(namespec)
        with _malformed("getProcessInfo"):
            return to_process_info(info, boot_clock())

    def commands(self) -> list[tuple[str, str, str]]:
        """(namespec, command, directory) of every configured process, listeners included."""
        configs = self._proxy.supervisor.getAllConfigInfo()
        with _malformed("getAllConfigInfo"):
            return [(f"{c['group']}:{c['name']}", str(c["command"]),
                     str(c.get("directory") or "")) for c in configs]

    def configured_commands(self) -> dict[str, str] | None:
        """namespec -> the command supervisord's configuration runs for it (what its admin
        wrote, whatever the process later calls itself); None if supervisord did not answer."""
        try:
            return {namespec: command for namespec, command, _ in self.commands()}
        except SupervisorError:
            return None

    def stop_waits(self) -> dict[str, float]:
        """namespec -> its stopwaitsecs: how long supervisord waits after the stopsignal
        before it sends SIGKILL."""
        return {f"{c['group']}:{c['name']}": float(c.get("stopwaitsecs") or 0)
                for c in self._proxy.supervisor.getAllConfigInfo()}

    def stop(self, namespec: str) -> None:
        self._proxy.supervisor.stopProcess(namespec, True)

    def start(self, namespec: str) -> None:
        self._proxy.supervisor.startProcess(namespec, True)


@contextlib.contextmanager
def _malformed(call: str) -> Iterator[None]:
    """A well-formed answer of the wrong shape is a ResponseError too, one line."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise xmlrpc.client.ResponseError(
            f"{call} answered an unexpected shape ({type(exc).__name__}: {quoted(exc, 80)})") from None


def boot_clock() -> float:
    """Seconds since boot, suspend included: the clock of the kernel's process start times."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def to_process_info(info: dict[str, Any], listed_at: float) -> ProcessInfo:
    return ProcessInfo(
        group=str(info["group"]),
        name=str(info["name"]),
        pid=int(info["pid"]),
        statename=str(info["statename"]),
        start=float(info["start"]),
        stop=float(info.get("stop") or 0.0),
        listed_at=listed_at,
        exitstatus=int(info.get("exitstatus") or 0),
    )
