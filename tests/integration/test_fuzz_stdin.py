"""Hostile stdin against the real listener process: never a traceback, never a byte on stdout
other than protocol tokens, and it carries on (or exits 0 at EOF)."""

from __future__ import annotations

import os
import re
import subprocess

import psutil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import PY, ROOT

TOKENS = re.compile(rb"(READY\n|RESULT 2\nOK|RESULT 4\nFAIL)*")
GOOD = b"ver:3.0 server:supervisor serial:1 pool:m poolserial:1 eventname:TICK_5 len:15\nwhen:1700000000"

header_ish = st.builds(
    lambda parts: b" ".join(parts) + b"\n",
    st.lists(st.one_of(
        st.sampled_from([b"ver:3.0", b"eventname:TICK_5", b"len:15", b"len:-1", b"len:0",
                         b"len:10000000000", b"len:abc", b"garbage", b":", b"len:", b"\xff\xfe"]),
        st.binary(max_size=20)), max_size=8))
stdin_streams = st.lists(st.one_of(st.binary(max_size=200), header_ish, st.just(GOOD)),
                         max_size=12).map(b"".join)


def run_listener(stdin: bytes, tmp: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [PY, "-m", "listener", "-a", "1GB", "--metrics-port", "0", "--state-dir", tmp,
         "--server-url", f"unix://{tmp}/absent.sock"],
        input=stdin, capture_output=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stdin=stdin_streams)
def test_random_stdin_never_corrupts_stdout_or_crashes(stdin: bytes, short_tmp) -> None:
    done = run_listener(stdin, str(short_tmp))
    assert done.returncode == 0, done.stderr[-2000:]
    assert TOKENS.fullmatch(done.stdout), done.stdout[:500]
    assert b"Traceback" not in done.stderr


def test_every_good_event_after_garbage_gets_ok(short_tmp) -> None:
    stdin = GOOD + b"\ngarbage line\n" + GOOD + b"ver:3.0 len:5 bad\nhello" + GOOD
    done = run_listener(stdin, str(short_tmp))
    assert done.returncode == 0
    assert done.stdout.count(b"RESULT 2\nOK") == 3
    assert done.stdout.count(b"RESULT 4\nFAIL") == 3  # an empty line, "garbage line", "bad"


def test_a_huge_len_does_not_make_it_allocate_that_much(short_tmp) -> None:
    # 10 GB announced, 50 MB sent: memory must stay far below either
    proc = subprocess.Popen(
        [PY, "-m", "listener", "-a", "1GB", "--metrics-port", "0", "--state-dir", str(short_tmp),
         "--server-url", f"unix://{short_tmp}/absent.sock"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdin and proc.stdout
    assert proc.stdout.readline() == b"READY\n"
    proc.stdin.write(b"ver:3.0 eventname:TICK_5 len:10000000000\n")
    chunk = b"x" * (1 << 20)
    peak = 0
    for _ in range(50):
        proc.stdin.write(chunk)
        proc.stdin.flush()
        peak = max(peak, psutil.Process(proc.pid).memory_info().rss)
    proc.stdin.close()
    out = proc.stdout.read()
    assert proc.wait(60) == 0
    assert out == b"RESULT 4\nFAILREADY\n"  # dropped in chunks, answered FAIL at EOF
    assert peak < 100 * 2**20, peak
