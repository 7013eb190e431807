"""The listener's HTTP endpoint: a WSGI app (prometheus_client's own for /metrics) served on a
thread of its own, bounded so that no client can starve the listener.

prometheus_client's start_http_server gives every connection an unbounded thread without a
timeout and does the TLS handshake in its accept loop, where one silent client stalls every
scrape. Here at most `max_connections` are served at once (more are closed at once), each
socket has a timeout, the TLS handshake runs in the connection's thread, and running out of
descriptors pauses the accept loop instead of spinning it.
"""

from __future__ import annotations

import errno
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from listener.log import fields

log = logging.getLogger("memwatch.http")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

MAX_CONNECTIONS = 16
TIMEOUT = 10.0  # seconds a connection may be silent (Prometheus's default scrape timeout)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: stderr is the listener's log."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _BoundedServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily,
                 tls: ssl.SSLContext | None, max_connections: int, timeout: float) -> None:
        self.address_family = family
        self.tls = tls
        self.connection_timeout = timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _QuietHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                time.sleep(0.1)  # out of descriptors: accept again later, without spinning
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # full: close at once, keep no thread
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(self.connection_timeout)
            if self.tls is not None:
                request = self.tls.wrap_socket(request, server_side=True)
            self.finish_request(request, client_address)
        except Exception as exc:  # a client that hangs up, times out or fails TLS: its problem
            log.debug("HTTP connection failed", extra=fields(client=str(client_address[0]),
                                                             error=str(exc)))
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver would print a traceback to stderr (the listener's log) for, e.g., a
        # thread that cannot be started; one line is enough, and the connection is closed
        log.warning("HTTP connection not served", extra=fields(client=str(client_address[0])))

    def server_bind(self) -> None:
        # HTTPServer's would look up the host's FQDN (DNS) for a name nobody reads
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])
        self.setup_environ()


def tls_context(certfile: str, keyfile: str, client_cafile: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    if client_cafile:
        context.load_verify_locations(cafile=client_cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class HttpServer:
    """Serves `app` on addr:port (0: a free port) until close(). Raises OSError if the address
    cannot be bound or a TLS file cannot be loaded."""

    def __init__(self, app: WSGIApp, addr: str, port: int, tls: ssl.SSLContext | None = None,
                 max_connections: int = MAX_CONNECTIONS, timeout: float = TIMEOUT) -> None:
        family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
        self._server = _BoundedServer((addr, port), family, tls, max_connections, timeout)
        self._server.set_app(app)
        self._thread = threading.Thread(target=self._server.serve_forever, name="memwatch-http",
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
