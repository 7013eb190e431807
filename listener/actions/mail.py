"""Mail about restarts through a sendmail command, as memmon does (-m, -s, -u, -n)."""

from __future__ import annotations

import email.utils
import logging
import shlex
import socket
import subprocess
import time

from listener.core.model import Restart
from listener.log import fields

log = logging.getLogger("memwatch.notify")


class Mailer:
    def __init__(self, to: str, sendmail: str = "/usr/sbin/sendmail -t -i",
                 name: str | None = None, uptime: float | None = None,
                 timeout: float = 30.0) -> None:
        self.to = to
        self.sendmail = sendmail
        self.name = name
        self.uptime = uptime  # -u: mail only about processes up at most this long
        self.timeout = timeout

    def restarted(self, action: Restart) -> None:
        t = action.target
        if self.uptime is not None and action.uptime > self.uptime:
            log.info("no mail: the process had been up longer than -u/--uptime", extra=fields(
                process=t.namespec, uptime_seconds=round(action.uptime), uptime_limit=self.uptime))
            return
        self.send(f"process {t.namespec} restarted",
                  f"sentry-memwatch restarted the process named {t.namespec} at "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} because it was using too much memory "
                  f"({t.memory} bytes {t.measure.upper()}, limit {t.limit} bytes from {t.rule}; "
                  f"it had been up {action.uptime:.0f}s).")

    def start_failed(self, namespec: str) -> None:
        self.send(f"failed to start process {namespec}",
                  f"sentry-memwatch stopped {namespec} for memory and could not start it "
                  "again; it keeps retrying on every tick.")

    def subject(self, text: str) -> str:
        return f"memwatch [{self.name}]: {text}" if self.name else f"memwatch: {text}"

    def message(self, subject: str, body: str) -> str:
        sender = f"sentry-memwatch@{socket.getfqdn()}"
        return (f"To: {self.to}\nFrom: {sender}\nDate: {email.utils.formatdate(localtime=True)}\n"
                f"Subject: {self.subject(subject)}\n\n{body}\n")

    def send(self, subject: str, body: str) -> None:
        """Hand the mail to sendmail; a failure is logged, never raised."""
        try:
            argv = shlex.split(self.sendmail)
            done = subprocess.run(argv, input=self.message(subject, body).encode(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  timeout=self.timeout, check=False)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            log.error("could not send mail", extra=fields(command=self.sendmail, error=str(exc)))
            return
        if done.returncode != 0:
            log.error("sendmail failed", extra=fields(
                command=self.sendmail, status=done.returncode,
                stderr=done.stderr.decode(errors="replace").strip()[:200]))
