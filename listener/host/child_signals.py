"""Signals to one child of a supervised process (--child-signal), sent from the event loop.

The child is checked before the signal: same kernel start time as when it was sampled, and
still a descendant of the supervised pid. A pidfd opened before that check pins the process
that receives the signal (the child, or its master for a server that replaces its workers
itself), so a pid reused between the check and the signal is never hit (plain kill() where the
kernel has no pidfd_open)."""

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
        receiver = self._receiver(action)
        pidfd = self._open(receiver) if receiver else None
        try:
            # checked after the pidfd pins the receiver: a pid reused since is never hit
            if not receiver or self._still_that_child(action) != receiver:
                log.info("child changed or exited since the decision; not signalling",
                         extra=fields(**ctx))
                return False
            if pidfd is None:
                os.kill(receiver, action.signal)
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
        said = signal.Signals(action.signal).name
        if action.to_master:
            log.warning("signalled the master to replace its workers one by one: a worker is "
                        "over its memory limit", extra=fields(**ctx, signal=said))
        else:
            log.warning("signalled child over its memory limit", extra=fields(**ctx, signal=said))
        return True

    def _open(self, pid: int) -> int | None:
        if self._pidfd_open is None:
            return None
        try:
            return self._pidfd_open(pid)
        except OSError:  # gone (checked next, and said there), or no pidfd in this kernel
            return None

    def _receiver(self, action: SignalChild) -> int:
        """The child; for a server that replaces its workers itself, the child's parent: its
        master, which is the supervised process or, behind a wrapping shell, its child. 0: gone."""
        if not action.to_master:
            return action.child_pid
        stat = self._reader.stat(action.child_pid)
        return stat.ppid if stat is not None else 0

    def _still_that_child(self, action: SignalChild) -> int:
        """The receiver if the child is still the one decided on (same start time, not a
        zombie) and descends from the supervised pid; else 0."""
        stat = self._reader.stat(action.child_pid)
        if stat is None or stat.state == "Z" or abs(stat.started - action.child_started) > SAME_START:
            return 0
        pid = stat.ppid
        for _ in range(MAX_DEPTH):
            if pid == action.target.pid:
                return stat.ppid if action.to_master else action.child_pid
            parent = self._reader.stat(pid) if pid > 1 else None
            if parent is None:
                return 0
            pid = parent.ppid
        return 0
