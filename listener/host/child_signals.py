"""Signals to one child of a supervised process (--child-signal), sent from the event loop.

The child is checked before the signal: same kernel start time as when it was sampled, and
still a descendant of the supervised pid. A pidfd opened before that check pins the process
that receives the signal (the child, or its master for a server that replaces its workers
itself), so a pid reused between the check and the signal is never hit (plain kill() where the
kernel has no pidfd_open)."""

from __future__ import annotations

import enum
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence

from listener.core.model import SAME_START, ProcessInfo, SignalChild
from listener.host.procfs import ProcReader
from listener.log import fields
from listener.web.stats import Counter, Stats

log = logging.getLogger("memwatch.signals")

PIDFD_OPEN: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
MAX_DEPTH = 64  # ancestry walk bound: a pid loop in a hostile /proc must not hang the loop


class Sent(enum.Enum):
    YES = "sent"
    NO = "not sent"  # the child changed or exited, or the kernel refused: said and counted
    NOT_CAUGHT = "not caught"  # it catches none of the signals it may get: do `otherwise`


class ChildSignaller:
    def __init__(self, stats: Stats, reader: ProcReader | None = None,
                 pidfd_open: Callable[[int], int] | None = PIDFD_OPEN) -> None:
        self._stats = stats
        self._reader = reader or ProcReader()
        self._pidfd_open = pidfd_open

    def send(self, action: SignalChild) -> Sent:
        """Whether the signal was delivered; every outcome is logged, failures counted."""
        target = action.target
        ctx = target.fields()
        receiver = self._receiver(action)
        pidfd = self._open(receiver) if receiver else None
        try:
            # checked after the pidfd pins the receiver: a pid reused since is never hit
            if not receiver or self._still_that_child(action) != receiver:
                log.info("child changed or exited since the decision; not signalling",
                         extra=fields(**ctx))
                return Sent.NO
            signum = self._signal_for(action, receiver)
            if signum is None:
                return Sent.NOT_CAUGHT
            if pidfd is None:
                os.kill(receiver, signum)
            else:
                signal.pidfd_send_signal(pidfd, signum)
        except ProcessLookupError:
            log.info("child exited before the signal", extra=fields(**ctx))
            return Sent.NO
        except OSError as exc:
            self._stats.count(target.namespec, Counter.RESTART_FAILURES)
            log.error("could not signal child", extra=fields(**ctx, error=exc.strerror or str(exc)))
            return Sent.NO
        finally:
            if pidfd is not None:
                os.close(pidfd)
        self._stats.count(target.namespec, Counter.CHILD_SIGNALS)
        said = signal.Signals(signum).name
        if action.to_master:
            log.warning("signalled the master to replace its workers one by one: a worker is "
                        "over its memory limit", extra=fields(**ctx, signal=said))
        else:
            log.warning("signalled child over its memory limit", extra=fields(**ctx, signal=said))
        return Sent.YES

    def _signal_for(self, action: SignalChild, receiver: int) -> int | None:
        """The signal to send: the action's, or the first of `if_caught` the receiver has a
        handler for (a handler is what makes the signal graceful); None if it has none."""
        if not action.if_caught:
            return action.signal
        caught = self._reader.caught_signals(receiver) or frozenset()
        for signum in action.if_caught:
            if signum in caught:
                return signum
        names = " or ".join(signal.Signals(s).name for s in action.if_caught)
        log.warning(f"child has no handler for {names}: restarting its program instead",
                    extra=fields(**action.target.fields()))
        return None

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


def say_drained(before: Mapping[tuple[str, int], tuple[float, float]],
                after: Mapping[tuple[str, int], tuple[float, float]],
                processes: Sequence[ProcessInfo], now: float) -> None:
    """A signalled child that is gone (its process still listed): the signal's outcome."""
    listed = {p.namespec for p in processes}
    for (namespec, child), (_, sent) in before.items():
        if (namespec, child) not in after and namespec in listed:
            log.info("signalled child is gone", extra=fields(
                process=namespec, child_pid=child, seconds_after_signal=round(now - sent, 1)))
