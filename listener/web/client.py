"""Our side of HTTP when we ask another party (another listener's /status, Prometheus, supervisord):
a deadline on the whole request, not on each receive (a server that sends a byte every few
seconds is given up on in time), a cap on the body, JSON whose nesting and numbers are bounded,
and credentials that never go to another host than the one they were given for."""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import socket
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from listener.core.text import format_size, quoted

MAX_REDIRECTS = 5
MAX_DIGITS = 40  # a JSON integer longer than this is no count, time or size of ours


class Deadline:
    """The moment a request is given up: every wait on its socket gets only what is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def restart(self) -> None:
        self.at = time.monotonic() + self.seconds

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise self.passed()
        return left

    def passed(self) -> TimeoutError:
        return TimeoutError(f"no whole answer within {self.seconds:g}s")


class _DeadlineReader(io.RawIOBase):
    """The socket's own reader (which keeps the socket open while it is), each read bounded."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(self._deadline.left())
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            raise self._deadline.passed() from None

    def close(self) -> None:
        self._raw.close()
        super().close()


class DeadlineSocket:
    """A connected socket (plain, TLS or unix) whose every send and receive ends by the deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock, self._deadline = sock, deadline

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(self._deadline.left())
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise self._deadline.passed() from None

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))

    def __getattr__(self, name: str) -> Any:  # close, setsockopt...: the socket's own
        return getattr(self._sock, name)


class DeadlineConnection(http.client.HTTPConnection):
    """An HTTP connection whose connect, request and answer all end by `deadline`."""

    def __init__(self, host: str, port: int | None, deadline: Deadline) -> None:
        super().__init__(host, port, timeout=deadline.seconds)
        self.deadline = deadline

    def connect(self) -> None:
        self.timeout = self.deadline.left()
        try:
            super().connect()
        except TimeoutError:
            raise self.deadline.passed() from None
        self.sock = DeadlineSocket(self.sock, self.deadline)


class DeadlineHTTPSConnection(DeadlineConnection, http.client.HTTPSConnection):
    def __init__(self, host: str, port: int | None, deadline: Deadline) -> None:
        http.client.HTTPSConnection.__init__(self, host, port, timeout=deadline.seconds)
        self.deadline = deadline


class Refused(Exception):
    """An answer we do not take, in words for a person: too big, a redirect we will not follow."""


def why(reason: object, timeout: float | None = None) -> str:
    """Why a request to another party failed, in words for a person; its own text escaped and
    clipped (it is the other end's)."""
    if isinstance(reason, TimeoutError) and timeout is not None:
        return f"no whole answer within {timeout:g}s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason.strerror})"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(reason, http.client.HTTPException):
        return f"the server does not speak HTTP ({type(reason).__name__}: {quoted(reason, 80)})"
    if isinstance(reason, OSError) and reason.strerror:
        return quoted(reason.strerror)
    return quoted(reason)


def read_body(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    """The body, refused past `max_bytes` (the deadline of its connection bounds the time)."""
    body = response.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise Refused(f"the answer is over {format_size(max_bytes)}")
    if response.length:  # bytes announced and never sent
        raise Refused(f"the answer was cut short, {response.length} bytes before its end")
    return body


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def get(url: str, timeout: float, max_bytes: int,
        headers: Mapping[str, str] | None = None) -> Answer:
    """GET `url` within `timeout` seconds in all (redirects included), the body at most
    `max_bytes`. A user:password in the URL goes as basic auth to that scheme, host and port
    only: a redirect elsewhere is refused rather than followed with it. Raises Refused,
    OSError (TimeoutError past the deadline) or http.client.HTTPException."""
    deadline = Deadline(timeout)
    target, auth = _split_credentials(url)
    origin = _origin(target)
    for _ in range(MAX_REDIRECTS + 1):
        sent = dict(headers or {})
        if auth and _origin(target) == origin:
            sent["Authorization"] = auth
        status, kind, location, body = _one_get(target, sent, deadline, max_bytes)
        if location is None:
            return Answer(status, kind, body)
        target = _redirect(target, location, origin if auth else None)
    raise Refused(f"more than {MAX_REDIRECTS} redirects")


def _one_get(url: str, headers: Mapping[str, str], deadline: Deadline,
             max_bytes: int) -> tuple[int, str, str | None, bytes]:
    """(status, content type, where it redirects to or None, body) of one request."""
    parts = urllib.parse.urlsplit(url)
    kind = DeadlineHTTPSConnection if parts.scheme == "https" else DeadlineConnection
    conn = kind(parts.hostname or "", parts.port, deadline)
    try:
        conn.request("GET", urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")),
                     headers={**headers, "Connection": "close"})
        resp = conn.getresponse()
        location = resp.getheader("Location") if resp.status in (301, 302, 303, 307, 308) else None
        return resp.status, resp.headers.get_content_type(), location, read_body(resp, max_bytes)
    finally:
        conn.close()


def _redirect(current: str, location: str, credentials_origin: tuple[str, str, int] | None) -> str:
    target = urllib.parse.urljoin(current, location.strip())
    parts = urllib.parse.urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise Refused(f"a redirect to {quoted(target)}, which is no plain http(s) address")
    if credentials_origin is not None and _origin(target) != credentials_origin:
        raise Refused(f"a redirect to another host, {quoted(target)}: the password is never "
                      "sent there; give that address itself if it is meant")
    return target


def _origin(url: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(url)
    return (parts.scheme, (parts.hostname or "").lower(),
            parts.port or (443 if parts.scheme == "https" else 80))


def _split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without user:password@, and the Authorization header they make (or None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, f"Basic {token}"


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"a number of {len(digits)} digits")
    return int(digits)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"a number out of range ({quoted(text, 20)})")
    return number


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is no JSON number")


def loads(body: bytes) -> object:
    """JSON as an answer of others may be: UTF-8, integers of at most MAX_DIGITS digits, no
    NaN or Infinity, nesting no deeper than the JSON decoder takes (its RecursionError: about
    1,000 deep before Python 3.12, a few thousand after; the body cap bounds the rest). ValueError
    (a UnicodeDecodeError too) saying what is wrong."""
    try:
        return json.loads(body, parse_int=_bounded_int, parse_float=_finite,
                          parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
