"""`check --listener URL`: another listener's view as a table, and whatever else a URL answers
as one line (exit code 2 through CheckError), never a traceback or a hung command."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from listener.core.rows import ProcessRow
from listener.tools.check import STATUS_MAX_BYTES, CheckError, check_listener, listener_table
from listener.web.view import StatusView, to_json

MiB = 1024**2
NOW = 2000.0
BIG = ProcessRow("big", "big", 60 * MiB, "rss", 30 * MiB, 2, 3, pid=4242, verdict="act",
                 strategy="rss, each", budget_left=2, memory_pid=4250, restarts=1,
                 last_action="restarts", last_action_at=NOW - 5)
SMALL = ProcessRow("small", "small", 10 * MiB, "rss", 100 * MiB, 0, None, pid=4343,
                   verdict="ok", strategy="rss", memory_pid=4343)
STOPPED = ProcessRow("cron", "cron", None, "pss", 50 * MiB, 0, None, verdict="not running",
                     strategy="pss")
VIEW = StatusView("0.1.0", True, NOW - 3, 0, (BIG, SMALL, STOPPED))


def cells(text: str, name: str) -> list[str]:
    return next(line.split("  ") for line in text.splitlines() if line.startswith(name + " "))


def test_the_table_writes_pids_sizes_and_ages_the_one_way() -> None:
    text, code = listener_table(VIEW, NOW)
    assert code == 0  # big is over, and the listener acted on it this tick
    assert text.splitlines()[0] == ("supervisord reachable, last tick 3s ago, stopped and not "
                                    "running again: 0")
    big = [c.strip() for c in cells(text, "big") if c.strip()]
    assert big == ["big", "big", "4242", "rss, each", "60.0MiB rss (pid 4250)", "30.0MiB", "act",
                   "1", "0", "2", "restarted 5s ago"]
    small = [c.strip() for c in cells(text, "small") if c.strip()]
    assert small[4] == "10.0MiB rss"  # its own figure: no pid to name
    cron = [c.strip() for c in cells(text, "cron") if c.strip()]
    assert cron[2] == "-" and cron[4] == "-" and cron[-1] == "-"


def test_nothing_over_and_a_listener_that_never_ticked() -> None:
    text, code = listener_table(StatusView("0.1.0", False, 0.0, 1, (SMALL,)), NOW)
    assert code == 2  # supervisord out of the listener's reach: it cannot tell
    assert text.startswith("supervisord UNREACHABLE, last tick never, stopped and not running "
                           "again: 1\n")


def test_control_characters_in_names_are_escaped_not_sent_to_the_terminal() -> None:
    hostile = ProcessRow("g\x1b[2J", "p\nq", 1, "rss", 2, 0, None)
    text, _ = listener_table(StatusView("0.1.0", True, NOW, 0, (hostile,)), NOW)
    assert "\x1b" not in text and "g\\x1b[2J" in text and "p\\nq" in text
    assert len(text.splitlines()) == 3


# --- over HTTP: a server that answers whatever a test wants ---


Answer = Callable[[socket.socket], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], str]]:
    """Serve one answer (a function writing to the connection) to every request: the URL."""
    servers: list[socket.socket] = []

    def start(answer: Answer) -> str:
        srv = socket.create_server(("127.0.0.1", 0))
        servers.append(srv)

        def loop() -> None:
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    conn.recv(65536)
                    with contextlib.suppress(OSError):  # the client gave up: its test says
                        answer(conn)

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{srv.getsockname()[1]}"

    yield start
    for srv in servers:
        srv.close()


def http(body: bytes, status: str = "200 OK") -> Answer:
    def answer(conn: socket.socket) -> None:
        conn.sendall(f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return answer


def served(view: StatusView) -> dict[str, Any]:
    return json.loads(json.dumps(to_json(view)))


def test_a_listeners_view_over_http_and_its_exit_code(serve: Callable[[Answer], str]) -> None:
    out = io.StringIO()
    url = serve(http(json.dumps(served(VIEW)).encode()))
    assert check_listener(url, out) == 0  # big is over its limit, and acted on
    out = io.StringIO()
    left = StatusView("0.1.0", True, time.time(), 0, (dataclasses.replace(BIG, verdict="suppressed"),))
    assert check_listener(serve(http(json.dumps(served(left)).encode())), out) == 1
    assert "60.0MiB rss (pid 4250)" in out.getvalue()
    out = io.StringIO()
    calm = StatusView("0.1.0", True, time.time(), 0, (SMALL,))
    assert check_listener(serve(http(json.dumps(served(calm)).encode())) + "/status/", out) == 0


def wrong_type() -> bytes:
    answer = served(VIEW)
    answer["processes"][0]["memory_bytes"] = "60MB"
    return json.dumps(answer).encode()


HOSTILE: list[tuple[str, Answer, str]] = [
    ("not json", http(b"<html>hello</html>"), "Expecting value"),
    ("not utf-8", http(b'{"version": "\xff"}'), "codec can't decode"),
    ("a wrong type", http(wrong_type()), "processes[0].memory_bytes: expected a whole number"),
    ("NaN", http(json.dumps({**served(VIEW), "last_tick": float("nan")}).encode()),
     "NaN is no JSON number"),
    ("deep nesting", http(b"[" * 100_000 + b"]" * 100_000), "JSON nested too deep"),
    ("an error status", http(b"{}", "500 Internal Server Error"), "HTTP 500"),
    ("no answer at all", lambda conn: None, "closed the connection without answering"),
    ("no HTTP", lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), "SSH-2.0"),
    ("a body cut short", lambda conn: conn.sendall(
        b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n{\"version\""), "cut short, 990 bytes"),
]


@pytest.mark.parametrize(("answer", "said"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_bad_answer_is_one_line(serve: Callable[[Answer], str], answer: Answer,
                                  said: str) -> None:
    url = serve(answer)
    out = io.StringIO()
    with pytest.raises(CheckError) as raised:
        check_listener(url, out, timeout=5.0)
    message = str(raised.value)
    assert message.startswith(f"--listener: cannot read {url}/status: ") and said in message
    assert "\n" not in message and out.getvalue() == ""


def test_an_endless_answer_is_cut_off(serve: Callable[[Answer], str]) -> None:
    def endless(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n[")
        chunk = b"0," * 65536
        for _ in range(STATUS_MAX_BYTES // len(chunk) + 2):
            conn.sendall(chunk)

    with pytest.raises(CheckError, match="the answer is over 64.0MiB"):
        check_listener(serve(endless), io.StringIO())


def test_an_answer_dripping_a_byte_at_a_time_is_given_up(serve: Callable[[Answer], str]) -> None:
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        for _ in range(100):
            conn.sendall(b" ")
            time.sleep(0.1)  # each read is well within the timeout; the whole is not

    began = time.monotonic()
    with pytest.raises(CheckError, match="no whole answer within 1s"):
        check_listener(serve(drip), io.StringIO(), timeout=1.0)
    assert time.monotonic() - began < 3.0


@pytest.mark.parametrize(("verdict", "code"), [
    ("act", 0), ("restarting", 0), ("draining", 0), ("over (counting)", 0), ("grace", 0),
    ("deferred", 0), ("suppressed", 1), ("excluded", 1)])
def test_a_probe_reads_normal_transitions_as_0_and_an_unhandled_excess_as_1(
        verdict: str, code: int) -> None:
    over = dataclasses.replace(BIG, verdict=verdict)
    assert listener_table(StatusView("0.1.0", True, NOW, 0, (over, SMALL)), NOW)[1] == code


def test_a_listener_without_ticks_cannot_tell_and_says_why() -> None:
    view = StatusView("0.1.0", False, 0.0, 0, (), tick_problem="no TICK event within 65s")
    text, code = listener_table(view, NOW)
    assert code == 2
    assert "cannot tell: no TICK event within 65s" in text.splitlines()[1]
