"""The metrics port cannot be blacked out: idle sockets, trickling clients and bursts of hundreds of
silent connections against the real listener (under a low descriptor limit), while real scrapes
keep being answered and events keep being answered."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.harness import ListenerProcess, Samples, scrape, value, wait_for

SCRAPE_TIMEOUT = 3.0  # one real scrape, while the port is under attack: well within Prometheus's 10 s
WHOLE_REQUEST = 10.0  # the listener's whole-request deadline (listener.web.httpserver.TIMEOUT)


def scrape_now(lst: ListenerProcess) -> Samples:
    """One scrape that must succeed at once: no retry (a refused scrape is a failed scrape)."""
    url = f"http://127.0.0.1:{lst.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as resp:
        assert resp.status == 200
        text = resp.read()
    assert b"memwatch_build_info" in text
    return scrape(lst.metrics_port)  # parsed (a second scrape, also under attack)


def idle_sockets(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


@contextlib.contextmanager
def tricklers(port: int, n: int, every: float) -> Iterator[list[float]]:
    """n clients each sending one byte of a request every `every` seconds, reconnecting when
    closed; yields the lifetimes (seconds) of the connections the server closed."""
    stop = threading.Event()
    lifetimes: list[float] = []

    def trickle() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    opened = time.monotonic()
                    for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n" * 100:
                        sock.sendall(bytes([byte]))
                        if stop.wait(every):  # the hostile client's own pace
                            return
            except OSError:  # closed by the server: note when, and come back
                lifetimes.append(time.monotonic() - opened)

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    try:
        yield lifetimes
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)


def started(listener: Callable[..., ListenerProcess], sv_url: str, nofile: int) -> ListenerProcess:
    lst = listener("-a", "100GB", server_url=sv_url, prefix=("prlimit", f"--nofile={nofile}:{nofile}"))
    lst.tick()
    return lst


@pytest.fixture
def sv_url(supervisord) -> str:  # type: ignore[no-untyped-def]
    return str(supervisord("[program:idle]\ncommand=sleep infinity\nstartsecs=0\n").url)


def test_300_idle_sockets_do_not_keep_scrapes_out(listener, sv_url: str) -> None:  # type: ignore[no-untyped-def]
    # the case: 300 silent connections against a listener with 128 descriptors
    lst = started(listener, sv_url, 128)
    idle = idle_sockets(lst.metrics_port, 300)
    try:
        for _ in range(5):
            samples = scrape_now(lst)
            lst.tick()
        assert value(samples, "memwatch_supervisor_up") == 1
    finally:
        for sock in idle:
            sock.close()
    assert "Traceback" not in lst.stderr()


def test_bursts_of_idle_sockets_leave_the_port_answering(listener, sv_url: str) -> None:  # type: ignore[no-untyped-def]
    lst = started(listener, sv_url, 64)
    held: list[socket.socket] = []
    try:
        for burst in (16, 64, 300, 300):
            held += idle_sockets(lst.metrics_port, burst)
            scrape_now(lst)  # right after the burst, not seconds later
            lst.tick()
    finally:
        for sock in held:
            sock.close()
    # a silent connection costs a descriptor only, and not many: the loop keeps its own
    fds = lst.ps.num_fds()
    assert fds < 48, f"{fds} descriptors held by the listener"


def test_trickling_clients_neither_hold_the_port_nor_their_connection(listener, sv_url: str) -> None:  # type: ignore[no-untyped-def]
    lst = started(listener, sv_url, 128)
    with tricklers(lst.metrics_port, 20, every=0.5) as lifetimes:
        # scrapes answered throughout, for longer than a whole request may take
        deadline = time.monotonic() + WHOLE_REQUEST + 3
        scrapes = 0
        while time.monotonic() < deadline:
            scrape_now(lst)
            lst.tick()
            scrapes += 1
        # a client that keeps sending, one byte at a time, is still closed at the deadline
        closed = wait_for(lambda: lifetimes[:], timeout=WHOLE_REQUEST, what="a trickler closed")
    assert scrapes >= 5
    assert all(t < WHOLE_REQUEST + 2 for t in closed), closed
