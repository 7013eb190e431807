"""listener.web.client over real sockets: redirects on the same host keep the credentials,
loops end, JSON is bounded, and the supervisord transport has a deadline on the whole call."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from listener.supervisord.rpc import Supervisor
from listener.web import client
from tests.hostile_http import HostileServer, http, redirect


@pytest.fixture
def servers() -> Iterator[list[HostileServer]]:
    started: list[HostileServer] = []
    yield started
    for server in started:
        server.close()


def test_a_redirect_on_the_same_host_keeps_the_credentials(servers: list[HostileServer]) -> None:
    target = HostileServer(http(b"{}"))
    servers.append(target)
    # same scheme, host and port: the target redirects to itself once, then answers
    hops = iter([redirect(f"{target.url}/api/v1/query"), http(b'{"ok": 1}')])
    target.answer = lambda conn: next(hops)(conn)
    answer = client.get(target.url.replace("://", "://u:p@") + "/api", 5.0, 1000)
    assert answer.status == 200 and answer.body == b'{"ok": 1}'
    assert [h["authorization"] for h in target.headers()] == ["Basic dTpw", "Basic dTpw"]


def test_without_credentials_a_redirect_to_another_host_is_followed(
        servers: list[HostileServer]) -> None:
    other = HostileServer(http(b"[]"), host="127.0.0.2")
    first = HostileServer(redirect(f"{other.url}/x"))
    servers += [other, first]
    assert client.get(first.url, 5.0, 1000).body == b"[]"


def test_a_redirect_loop_ends(servers: list[HostileServer]) -> None:
    loop = HostileServer(http(b""))
    servers.append(loop)
    loop.answer = redirect(f"{loop.url}/again")
    with pytest.raises(client.Refused, match="more than 5 redirects"):
        client.get(loop.url, 5.0, 1000)
    assert len(loop.requests) == 6


@pytest.mark.parametrize(("text", "said"), [
    (b"1" + b"0" * 41, "a number of 42 digits"), (b"[1e999]", "a number out of range"),
    (b"[NaN]", "NaN is no JSON number"), (b"[" * 100000 + b"]" * 100000, "JSON nested too deep"),
    (b'"\xff"', "codec can't decode")])
def test_json_from_others_is_bounded(text: bytes, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        client.loads(text)


def test_a_supervisord_that_trickles_its_answer_is_given_up_on_in_time(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def trickle() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<?xml":
                    conn.sendall(bytes([byte]))
                    time.sleep(0.1)  # each byte well within the timeout; the whole is not

    threading.Thread(target=trickle, daemon=True).start()
    began = time.monotonic()
    with server, pytest.raises(TimeoutError, match="no whole answer within 1s"):
        Supervisor(f"unix://{path}", timeout=1.0).processes()
    assert time.monotonic() - began < 2.0
