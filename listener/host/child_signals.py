"""Signals to one child of a supervised process (--child-signal), sent from the event loop.

The child is checked before the signal: same kernel start time as when it was sampled, and
still a descendant of the supervised pid. A pidfd opened before that check pins the process,
so a pid reused between the check and the signal is never hit (plain kill() where the kernel
has no pidfd_open)."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable

from listener.core.model import SAME_START, SignalChild
from listener.host.procfs import ProcReader
from listener.log import fields
from listener.web.stats import Counter, Stats

log = logging.getLogger("memwatch.signals")

PIDFD_OPEN: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
MAX_DEPTH = 64  # ancestry walk bound: a pid loop in a hostile /proc must not hang the loop


class ChildSignaller:
    def __init__(self, stats: Stats, reader: ProcReader | None = None,
                 pidfd_open: Callable[[int], int] | None = PIDFD_OPEN) -> None:
        self._stats = stats
        self._reader = reader or ProcReader()
        self._pidfd_open = pidfd_open

    def send(self, action: SignalChild) -> bool:
        """True if the signal was delivered; every outcome is logged, failures counted."""
        target = action.target
        ctx = target.fields()
        pidfd = self._open(action.child_pid)
        try:
            if not self._still_that_child(action):
                log.info("child changed or exited since the decision; not signalling",
                         extra=fields(**ctx))
                return False
            if pidfd is None:
                os.kill(action.child_pid, action.signal)
            else:
                signal.pidfd_send_signal(pidfd, action.signal)
        except ProcessLookupError:
            log.info("child exited before the signal", extra=fields(**ctx))
            return False
        except OSError as exc:
            self._stats.count(target.namespec, Counter.RESTART_FAILURES)
            log.error("could not signal child", extra=fields(**ctx, error=exc.strerror or str(exc)))
            return False
        finally:
            if pidfd is not None:
                os.close(pidfd)
        self._stats.count(target.namespec, Counter.CHILD_SIGNALS)
        log.warning("signalled child over its memory limit", extra=fields(
            **ctx, signal=signal.Signals(action.signal).name))
        return True

    def _open(self, pid: int) -> int | None:
        if self._pidfd_open is None:
            return None
        try:
            return self._pidfd_open(pid)
        except OSError:  # gone (checked next, and said there), or no pidfd in this kernel
            return None

    def _still_that_child(self, action: SignalChild) -> bool:
        stat = self._reader.stat(action.child_pid)
        if stat is None or stat.state == "Z" or abs(stat.started - action.child_started) > SAME_START:
            return False
        pid = stat.ppid
        for _ in range(MAX_DEPTH):
            if pid == action.target.pid:
                return True
            parent = self._reader.stat(pid) if pid > 1 else None
            if parent is None:
                return False
            pid = parent.ppid
        return False
