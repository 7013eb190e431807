"""The listener's HTTP endpoint: a WSGI app (prometheus_client's own for /metrics) served so that
no client, nor any number of them, can keep real scrapes out or starve the listener.

One thread owns every socket: it accepts, reads requests and writes answers without blocking
(a selector), so a connection that has not sent a whole request costs a descriptor, never a
thread or a slot. Each connection has a whole-request deadline (from accept to the last byte of
the answer), whatever it trickles. Open connections are capped (a share of the descriptor
limit); at the cap, or when accept() finds no descriptor, the oldest connection that is not
being answered gives way. Complete requests go to a few worker threads that run the app on the
request's bytes and hand the answer back; they never touch a socket. TLS handshakes run in the
same loop, without blocking either.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import resource
import selectors
import socket
import ssl
import threading
import time
from typing import Any

from listener.log import fields
from listener.web.wsgibytes import Site, WSGIApp

log = logging.getLogger("memwatch.http")

WORKERS = 4  # requests answered at once; the others wait their turn, within their deadline
TIMEOUT = 10.0  # seconds from accept to the answer's last byte (Prometheus's default scrape timeout)
MAX_OPEN = 256  # connections held at most; fewer under a low descriptor limit (open_cap)
MAX_REQUEST = 16 * 1024  # bytes of request line and headers
BACKLOG = 128


def open_cap(limit: int = MAX_OPEN) -> int:
    """Connections to hold at most: a quarter of the descriptor limit, so that /proc reads,
    supervisord's socket and the journal always find one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    share = soft // 4 if soft != resource.RLIM_INFINITY else limit
    return max(4, min(limit, share))


class _Conn:
    """One client connection, owned by the selector thread."""

    def __init__(self, sock: socket.socket, address: Any, timeout: float) -> None:
        self.sock = sock
        self.address = address
        self.deadline = time.monotonic() + timeout
        self.received = bytearray()
        self.answer = memoryview(b"")
        self.handshaking = isinstance(sock, ssl.SSLSocket)
        self.working = False  # with a worker: not to be closed under it

    def client(self) -> str:
        return str(self.address[0]) if isinstance(self.address, tuple) else "?"


def tls_context(certfile: str, keyfile: str, client_cafile: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_cafile:
        context.load_verify_locations(cafile=client_cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _listening_socket(addr: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class HttpServer:
    """Serves `app` on addr:port (0: a free port) until close(). Raises OSError if the address
    cannot be bound or a TLS file cannot be loaded."""

    def __init__(self, app: WSGIApp, addr: str, port: int, tls: ssl.SSLContext | None = None,
                 workers: int = WORKERS, timeout: float = TIMEOUT,
                 max_open: int | None = None) -> None:
        self._sock = _listening_socket(addr, port)
        self.port = int(self._sock.getsockname()[1])
        self._site = Site(app, addr, self.port)
        self._tls = tls
        self._timeout = timeout
        self._max_open = max_open or open_cap()
        self._conns: dict[int, _Conn] = {}  # by descriptor, oldest first
        self._todo: queue.SimpleQueue[_Conn | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Conn, bytes]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._accept_paused_until = 0.0
        self._closing = False
        self._workers = [threading.Thread(target=self._work, name=f"memwatch-http-{i}", daemon=True)
                         for i in range(workers)]
        self._thread = threading.Thread(target=self._serve, name="memwatch-http", daemon=True)
        for t in (*self._workers, self._thread):
            t.start()

    def close(self) -> None:
        self._closing = True
        self._wake()
        self._thread.join(timeout=5)
        for _ in self._workers:
            self._todo.put(None)

    # --- the selector thread: every socket operation happens here ---

    def _serve(self) -> None:
        try:
            while not self._closing:
                try:
                    self._step()
                except Exception as exc:  # a bug here must not close the port for good
                    log.error("HTTP server step failed", extra=fields(error=repr(exc)))
                    time.sleep(0.1)
        finally:
            for conn in list(self._conns.values()):
                self._drop(conn)
            self._selector.close()
            self._sock.close()
            self._wake_r.close()
            self._wake_w.close()

    def _step(self) -> None:
        now = time.monotonic()
        held = [c.deadline for c in self._conns.values() if not c.working]
        wait = min(held, default=now + 1.0) - now
        if self._accept_paused_until:
            wait = min(wait, self._accept_paused_until - now)
        ready = self._selector.select(max(0.0, min(wait, 1.0)))
        accept = False
        for key, mask in ready:
            if key.fileobj is self._sock:
                accept = True
            elif key.fileobj is self._wake_r:
                self._take_answers()
            elif mask & selectors.EVENT_WRITE and not key.data.handshaking:
                self._send(key.data)
            else:
                self._receive(key.data)
        if accept:  # after reading: a request already in is no longer the oldest idle one
            self._accept()
        self._expire(time.monotonic())

    def _accept(self) -> None:
        for _ in range(BACKLOG):
            try:
                sock, address = self._sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if not self._give_way():  # no descriptor: the oldest gives its own
                        self._pause_accepting()
                        return
                    continue
                log.debug("accept failed", extra=fields(error=str(exc)))
                return
            if len(self._conns) >= self._max_open and not self._give_way():
                sock.close()  # every slot is being answered: this one must come back
                continue
            self._admit(sock, address)

    def _admit(self, sock: socket.socket, address: Any) -> None:
        try:
            sock.setblocking(False)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True,
                                             do_handshake_on_connect=False)
        except OSError:
            sock.close()
            return
        conn = _Conn(sock, address, self._timeout)
        self._conns[sock.fileno()] = conn
        self._selector.register(sock, selectors.EVENT_READ, conn)
        self._receive(conn)  # a request sent with the connect is read now

    def _give_way(self) -> bool:
        """Close the oldest connection no worker is answering; False if there is none."""
        for conn in self._conns.values():
            if not conn.working:
                log.debug("HTTP connection given way", extra=fields(client=conn.client()))
                self._drop(conn)
                return True
        return False

    def _pause_accepting(self) -> None:
        # out of descriptors with nothing to give: accept again later, without spinning
        self._selector.unregister(self._sock)
        self._accept_paused_until = time.monotonic() + 0.1

    def _expire(self, now: float) -> None:
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._selector.register(self._sock, selectors.EVENT_READ)
        for conn in [c for c in self._conns.values() if c.deadline <= now and not c.working]:
            log.debug("HTTP connection timed out", extra=fields(client=conn.client()))
            self._drop(conn)

    def _receive(self, conn: _Conn) -> None:
        try:
            if conn.handshaking:
                conn.sock.do_handshake()  # type: ignore[attr-defined]
                conn.handshaking = False
                self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            while True:
                data = conn.sock.recv(8192)
                if not data:
                    return self._drop(conn)  # hung up before asking
                conn.received += data
                tail = conn.received[-len(data) - 2:]
                if b"\n\r\n" in tail or b"\n\n" in tail:  # the headers' end
                    return self._hand_over(conn)
                if len(conn.received) > MAX_REQUEST:
                    return self._drop(conn)
        except ssl.SSLWantWriteError:
            self._selector.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except OSError as exc:  # a client that resets or fails TLS: its problem
            log.debug("HTTP connection failed", extra=fields(client=conn.client(), error=str(exc)))
            self._drop(conn)

    def _hand_over(self, conn: _Conn) -> None:
        self._selector.unregister(conn.sock)
        conn.working = True
        self._todo.put(conn)

    def _take_answers(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while not self._done.empty():
            conn, answer = self._done.get()
            conn.working = False
            conn.answer = memoryview(answer)
            self._selector.register(conn.sock, selectors.EVENT_WRITE, conn)
            self._send(conn)

    def _send(self, conn: _Conn) -> None:
        try:
            while conn.answer:
                sent = conn.sock.send(conn.answer)
                conn.answer = conn.answer[sent:]
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        except OSError as exc:
            log.debug("HTTP answer not sent", extra=fields(client=conn.client(), error=str(exc)))
        self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        if self._conns.pop(conn.sock.fileno(), None) is None:
            return
        if not conn.working:
            with contextlib.suppress(OSError, KeyError, ValueError):
                self._selector.unregister(conn.sock)
        with contextlib.suppress(OSError, KeyError, ValueError):
            conn.sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError):
            self._wake_w.send(b"\0")

    # --- the workers: the app on a request's bytes, never a socket ---

    def _work(self) -> None:
        while (conn := self._todo.get()) is not None:
            answer = b""
            if time.monotonic() < conn.deadline:  # else too late: closed without an answer
                try:
                    answer = self._site.answer(bytes(conn.received), conn.address)
                except Exception as exc:  # the app's own errors are answered 500 by wsgiref
                    log.warning("HTTP request not answered", extra=fields(error=str(exc)))
            self._done.put((conn, answer))
            self._wake()
