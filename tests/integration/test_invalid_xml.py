"""supervisord accepts a program named with a control character ([program:a<ESC>b] in its config)
and then writes getAllProcessInfo as invalid XML (XML 1.0 has no ESC, not even as &#27;). The
listener, `check` and `advise` say so in one line, as an answer that cannot be read; the
listener counts it in memwatch_supervisor_up (0: the last call did not succeed), logs it once,
and keeps answering events."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import ROOT, hog, value

ESC_NAME = "web\x1b[31m"
SECTIONS = (f"[program:{ESC_NAME}]\ncommand={hog('--mb', 5)}\nstartsecs=0\n\n"
            f"[program:plain]\ncommand={hog('--mb', 5)}\nstartsecs=0\n")
SAID = "an answer that cannot be read: invalid XML"


@pytest.fixture
def esc_supervisord(supervisord):  # type: ignore[no-untyped-def]
    sv = supervisord(SECTIONS)
    assert any(ESC_NAME in line for line in sv.conf.read_text().splitlines())
    return sv


def test_the_listener_reports_invalid_xml_once_with_supervisor_up_0(esc_supervisord,
                                                                     listener) -> None:
    lst = listener("-a", "1GB", server_url=esc_supervisord.url)
    for _ in range(4):
        lst.tick()  # each answered RESULT OK, or tick() fails
    assert value(lst.metrics(), "memwatch_supervisor_up") == 0
    log = lst.stderr()
    assert "tick failed" not in log and "Traceback" not in log, log[-3000:]
    reported = [line for line in log.splitlines() if "supervisord unreachable" in line]
    assert len(reported) == 1 and SAID in reported[0], log[-3000:]
    assert "\x1b" not in log
    assert lst.proc.poll() is None


@pytest.mark.parametrize("command", [["check", "-a", "1GB"],
                                     ["advise", "-a", "1GB", "--duration", "1s"]])
def test_check_and_advise_say_it_in_one_line_and_exit_2(esc_supervisord,
                                                        command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "listener", *command,
                           "--server-url", esc_supervisord.url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[0].startswith(f"sentry-memwatch: error: supervisord at {esc_supervisord.url}: ")
    assert SAID in lines[0] and "cannot reach" not in lines[0]
