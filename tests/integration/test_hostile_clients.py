"""Our clients against a hostile HTTP server (tests/hostile_http.py): `check --listener` and
`advise --prometheus`, run as the real command with 1 GiB of address space. Whatever the other
end answers, the command ends within its --rpc-timeout with exit code 2 and one line naming the
flag and what was wrong; a password never reaches another host; names are printed escaped."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from listener.core.rows import ProcessRow
from listener.web.view import StatusView, to_json
from tests.hostile_http import Answer, HostileServer, endless, http, nested, redirect, trickle

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20
BOUND = 2.0  # --rpc-timeout given to the commands


def status(**changes: Any) -> dict[str, Any]:
    row = ProcessRow("web", "web", 60 * MiB, "rss", 100 * MiB, 0, None, pid=4242, verdict="ok",
                     strategy="rss", last_action="restarts", last_action_at=time.time() - 5)
    answer: dict[str, Any] = json.loads(json.dumps(to_json(StatusView("0.1.0", True, time.time(),
                                                                      0, (row,)))))
    answer["processes"][0].update(changes)
    return answer


def as_json(value: object) -> bytes:
    return json.dumps(value).encode()


def run(*args: str, bound: float = BOUND) -> tuple[subprocess.CompletedProcess[str], float]:
    def small() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "listener", *args, "--rpc-timeout", f"{bound:g}s",
                           "--server-url", "unix:///nonexistent/supervisor.sock"],
                          capture_output=True, text=True, timeout=bound + 120, cwd=ROOT,
                          preexec_fn=small)
    return done, time.monotonic() - began


@pytest.fixture
def hostile() -> Iterator[list[HostileServer]]:
    servers: list[HostileServer] = []
    yield servers
    for server in servers:
        server.close()


def serve(servers: list[HostileServer], answer: Answer, host: str = "127.0.0.1") -> HostileServer:
    servers.append(HostileServer(answer, host))
    return servers[-1]


def one_line_and_exit_2(done: subprocess.CompletedProcess[str], elapsed: float, flag: str,
                        said: str) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith(f"sentry-memwatch: error: {flag}"), lines[0]
    assert said in lines[0] and len(lines[0]) < 500, lines[0][:1000]
    assert "supervisord" not in lines[0]  # never contacted: never blamed
    # the deadline, plus starting Python on a loaded machine; without a deadline on the whole
    # request, the trickle takes over 4 minutes
    assert elapsed < BOUND + 30, elapsed


def long_status_line(conn: Any) -> None:
    conn.sendall(b"HTTP/1.0 2" + b"A" * 60_000 + b"\r\n\r\n")
GARBAGE = b"\x00\x01garbage \x1b[2J\r\n\r\n"
CHECK_CASES: list[tuple[str, Answer, str]] = [
    ("last_action.kind an int", http(as_json(status(last_action={"kind": 7, "at": 1.0}))),
     "processes[0].last_action.kind: expected a string, got 7"),
    ("strategy a list", http(as_json(status(strategy=["rss"]))),
     "processes[0].strategy: expected a string, got ['rss']"),
    ("a 400-digit number", http(as_json(status()).replace(b'"memory_bytes": 62914560',
                                                         b'"memory_bytes": ' + b"9" * 400)),
     "a number of 400 digits"),
    ("200,000 nested arrays", http(nested(200_000)), "JSON nested too deep"),
    ("a byte every 5 s", trickle(5.0), f"no whole answer within {BOUND:g}s"),
    ("garbage", lambda conn: conn.sendall(GARBAGE), "does not speak HTTP"),
    ("a 60,000-byte status line", long_status_line, "does not speak HTTP (BadStatusLine"),
]


@pytest.mark.parametrize(("answer", "said"), [c[1:] for c in CHECK_CASES],
                         ids=[c[0] for c in CHECK_CASES])
def test_check_listener_against_a_hostile_server(hostile: list[HostileServer], answer: Answer,
                                                 said: str) -> None:
    server = serve(hostile, answer)
    done, elapsed = run("check", "--listener", server.url)
    one_line_and_exit_2(done, elapsed, f"--listener: cannot read {server.url}/status: ", said)
    assert "\x1b" not in done.stderr


@pytest.mark.parametrize(("command", "said"), [
    (("check", "--listener"), "the answer is over 64.0MiB"),
    (("advise", "-a", "1GB", "--prometheus"), "the answer is over 128.0MiB")])
def test_an_endless_body_is_cut_at_the_cap_in_1_gib_of_address_space(
        hostile: list[HostileServer], command: tuple[str, ...], said: str) -> None:
    server = serve(hostile, endless)
    done, _ = run(*command, server.url, bound=300.0)  # time enough to send the cap when loaded
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1 and said in lines[0], done.stderr[-2000:]


def test_check_listener_prints_names_with_their_control_characters_escaped(
        hostile: list[HostileServer]) -> None:
    answer = status(group="\x1b]0;pwned\x07\x1b[2J", process="web\r\nfake row")
    server = serve(hostile, http(as_json(answer)))
    done, _ = run("check", "--listener", server.url)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\r" not in done.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in done.stdout and "web\\r\\nfake row" in done.stdout
    assert len(done.stdout.splitlines()) == 3  # the head, the titles, one row


def test_check_listener_never_sends_a_password_to_another_host(
        hostile: list[HostileServer]) -> None:
    other = serve(hostile, http(as_json(status())), host="127.0.0.2")
    server = serve(hostile, redirect(f"{other.url}/status"))
    done, elapsed = run("check", "--listener", server.url.replace("://", "://memwatch:s3cret@"))
    one_line_and_exit_2(done, elapsed, "--listener: cannot read", "a redirect to another host")
    assert "s3cret" not in done.stderr
    assert server.headers()[0]["authorization"] == "Basic bWVtd2F0Y2g6czNjcmV0"
    assert all("authorization" not in h for h in other.headers())


def time_answer(value: bytes) -> bytes:
    return b'{"status":"success","data":{"resultType":"scalar","result":[' + value + b',"1"]}}'


ADVISE_CASES: list[tuple[str, Answer, str]] = [
    ("result a string", http(b'{"status":"success","data":{"resultType":"scalar","result":"x"}}'),
     "a malformed scalar"),
    ("a 400-digit time", http(time_answer(b"9" * 400)), "a number of 400 digits"),
    ("a time of 1e400", http(time_answer(b"1e400")), "a number out of range"),
    ("200,000 nested arrays", http(nested(200_000)), "JSON nested too deep"),
    ("a byte every 5 s", trickle(5.0), f"no whole answer within {BOUND:g}s"),
    ("garbage", lambda conn: conn.sendall(GARBAGE), "does not speak HTTP"),
    ("a 60,000-character error", http(as_json({"status": "error", "errorType": "bad_data",
                                               "error": "\x1b[2J" + "A" * 60_000})),
     "... (60007 characters)"),
]


@pytest.mark.parametrize(("answer", "said"), [c[1:] for c in ADVISE_CASES],
                         ids=[c[0] for c in ADVISE_CASES])
def test_advise_prometheus_against_a_hostile_server(hostile: list[HostileServer], answer: Answer,
                                                    said: str) -> None:
    server = serve(hostile, answer)
    done, elapsed = run("advise", "-a", "1GB", "--prometheus", server.url)
    one_line_and_exit_2(done, elapsed, "--prometheus: ", said)
    assert "\x1b" not in done.stderr


def test_advise_never_sends_the_prometheus_password_to_another_host(
        hostile: list[HostileServer]) -> None:
    other = serve(hostile, http(time_answer(b"1700000000")), host="127.0.0.2")
    server = serve(hostile, redirect(f"{other.url}/api/v1/query?query=time()"))
    done, elapsed = run("advise", "-a", "1GB", "--prometheus",
                        server.url.replace("://", "://memwatch:s3cret@"))
    one_line_and_exit_2(done, elapsed, "--prometheus: ", "a redirect to another host")
    assert "s3cret" not in done.stderr
    assert server.headers()[0]["authorization"] == "Basic bWVtd2F0Y2g6czNjcmV0"
    assert all("authorization" not in h for h in other.headers())
