"""A hostile HTTP server for the tests of our clients: a thread with a raw listening socket that
answers every request with whatever bytes a test wants (wrong types, endless bodies, a byte every
few seconds, redirects), and records each request it got, headers included."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

Answer = Callable[[socket.socket], None]


class HostileServer:
    """Serves `answer` to every connection on `host` (any 127/8 address is another host to a
    client); `requests` holds the raw request heads received."""

    def __init__(self, answer: Answer, host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self._srv = socket.create_server((host, 0))
        self.url = f"http://{host}:{self._srv.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client gave up: its test says so
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                got = conn.recv(65536)
                if not got:
                    return
                head += got
            self.requests.append(head)
            self.answer(conn)

    def headers(self) -> list[dict[str, str]]:
        """The headers of each request received, names in lower case."""
        return [{k.strip().lower(): v.strip() for k, _, v in
                 (line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:] if line)}
                for head in self.requests]

    def close(self) -> None:
        self._srv.close()


def http(body: bytes, status: str = "200 OK", kind: str = "application/json",
         extra: str = "") -> Answer:
    def answer(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\n{extra}"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return answer


def endless(conn: socket.socket) -> None:
    """200 OK and a JSON array that never ends (4 GiB, if the client reads that long)."""
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[")
    chunk = b"0," * 32768
    for _ in range(4 * 2**30 // len(chunk)):
        conn.sendall(chunk)


def trickle(every: float) -> Answer:
    """An answer sent one byte every `every` seconds, status line and headers included."""
    def answer(conn: socket.socket) -> None:
        for byte in b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}":
            conn.sendall(bytes([byte]))
            time.sleep(every)
    return answer


def redirect(location: str) -> Answer:
    return http(b"", "302 Found", extra=f"Location: {location}\r\n")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth
