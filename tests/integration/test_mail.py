"""memmon's -m/-s/-u/-n: a mail per restart through a real sendmail-like command."""

from __future__ import annotations

import sys

import pytest

from tests.harness import hog, value, wait_for

PROGRAMS = f"""
[program:big]
command={hog('--mb', 50)}
startsecs=0
"""


def fake_sendmail(tmp) -> tuple[str, object]:
    """A sendmail stand-in that appends each message it is given to a file."""
    out = tmp / "mails.txt"
    script = tmp / "sendmail.py"
    script.write_text(
        "import sys\n"
        f"open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n-- end --\\n')\n")
    return f"{sys.executable} {script} -t -i", out


def test_a_restart_sends_a_mail_with_headers_and_the_name_in_the_subject(supervisord, listener,
                                                                          short_tmp):
    sv = supervisord(PROGRAMS)
    sv.wait_allocated({"big:big": 45})
    sendmail, mails = fake_sendmail(short_tmp)
    lst = listener("-p", "big=30MB", "-m", "ops@example.com", "-s", sendmail, "-n", "Project 1",
                   "--max-restarts", "1", server_url=sv.url)
    lst.tick()
    text = wait_for(lambda: mails.exists() and mails.read_text(), what="a mail")
    headers = dict(line.split(": ", 1) for line in text.split("\n\n", 1)[0].splitlines())
    assert headers["To"] == "ops@example.com"
    assert headers["Subject"] == "memwatch [Project 1]: process big:big restarted"
    assert headers["From"].startswith("sentry-memwatch@")
    assert headers["Date"]
    assert "big:big" in text.split("\n\n", 1)[1]


NOT_MAILED = "no mail: the process had been up longer than -u/--uptime"


def mail_decided(lst, mails) -> bool:  # type: ignore[no-untyped-def]
    """The listener has mailed about the restart, or said it would not."""
    return "-- end --" in (mails.read_text() if mails.exists() else "") or NOT_MAILED in lst.stderr()


@pytest.mark.parametrize(("uptime", "mailed"), [
    ("1h", True),  # big has been up a few seconds: young
    ("0", False),  # up longer than 0 s: old (memmon's meaning of -u)
])
def test_uptime_limit_mails_only_about_processes_restarted_young(supervisord, listener, short_tmp,
                                                                  uptime, mailed):
    sv = supervisord(PROGRAMS)
    sv.wait_allocated({"big:big": 45})
    sendmail, mails = fake_sendmail(short_tmp)
    lst = listener("-p", "big=30MB", "-m", "ops@example.com", "-s", sendmail, "-u", uptime,
                   "--max-restarts", "1", server_url=sv.url)
    lst.tick()
    wait_for(lambda: mail_decided(lst, mails), what="the mail sent or the restart said unmailed")
    assert mails.exists() is mailed
    assert (NOT_MAILED in lst.stderr()) is not mailed
    assert value(lst.metrics(), "memwatch_restarts_total", group="big", process="big") == 1


def test_a_failing_sendmail_is_logged_and_never_fatal(supervisord, listener, short_tmp):
    sv = supervisord(PROGRAMS)
    sv.wait_allocated({"big:big": 45})
    lst = listener("-p", "big=30MB", "-m", "ops@example.com", "-s", "/nonexistent/sendmail -t",
                   "--max-restarts", "1", server_url=sv.url)
    lst.tick()
    wait_for(lambda: "could not send mail" in lst.stderr(), what="the mail error logged")
    lst.tick()
    assert lst.proc.poll() is None
    assert value(lst.metrics(), "memwatch_restarts_total", group="big", process="big") == 1
