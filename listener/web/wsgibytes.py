"""A WSGI app run on a request's bytes, its answer collected as bytes: the HTTP server's
workers use it, so that only the server's selector thread ever touches a socket."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Handler(WSGIRequestHandler):
    """wsgiref's request handling on bytes already read; the answer is collected, not sent."""

    request: bytes

    def setup(self) -> None:
        self.rfile = io.BytesIO(self.request)
        self.wfile = io.BytesIO()

    def finish(self) -> None:
        pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on stderr: stderr is the listener's log


class Site:
    """What wsgiref's handler asks its server for."""

    def __init__(self, app: WSGIApp, host: str, port: int) -> None:
        self.app = app
        self.base_environ = {"SERVER_NAME": host, "GATEWAY_INTERFACE": "CGI/1.1",
                             "SERVER_PORT": str(port), "REMOTE_HOST": "", "CONTENT_LENGTH": "",
                             "SCRIPT_NAME": ""}

    def get_app(self) -> WSGIApp:
        return self.app

    def answer(self, request: bytes, address: Any) -> bytes:
        handler = _Handler(request, address, self)  # type: ignore[arg-type]
        return cast(io.BytesIO, handler.wfile).getvalue()
