"""The kernel's OOM kills, seen from the host: /dev/kmsg read without blocking, /proc/vmstat's
`oom_kill` where the kernel log cannot be read (listener.core.oom parses both and attributes).

/dev/kmsg is opened once, at its end (a kill before the listener started is not this run's),
and kept open: each tick reads it until the kernel says EAGAIN, so a quiet tick costs one read()
that returns at once. Reading it needs root or CAP_SYSLOG (when kernel.dmesg_restrict is 1);
without, OOM kills are counted from /proc/vmstat (one small read a tick) and cannot say whom
they killed. A kernel log that outran the reader (EPIPE: records overwritten) is checked against
/proc/vmstat so that kills it lost are still counted, as not attributed."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from listener.core.model import ProcessInfo, Sample
from listener.core.oom import Kill, Seen, attribute, parse_record, seen_in, vmstat_oom_kills

log = logging.getLogger("memwatch.oom")

KMSG = "/dev/kmsg"
VMSTAT = "/proc/vmstat"
RECORD_MAX = 8192  # a kmsg read returns one record; the kernel's are at most ~1 KiB
MAX_RECORDS = 10000  # records read in one tick at most: a flood of the log cannot hold the loop


Generation = tuple[Sequence[ProcessInfo], Mapping[str, Sample]]


@dataclass(frozen=True)
class Found:
    """What one tick learned: kills attributed to watched processes, kills of others, and a
    number of kills known only from the kernel's count (no kernel log, or records lost)."""

    watched: tuple[tuple[Kill, Seen], ...] = ()
    others: tuple[Kill, ...] = ()
    uncounted: int = 0


def _read_vmstat(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return vmstat_oom_kills(os.read(fd, 16384))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


@dataclass
class KernelKills:
    """Where the listener learns of OOM kills: `source` is "kmsg", "vmstat" or "none"."""

    kmsg_path: str = KMSG
    vmstat_path: str = VMSTAT
    source: str = "none"
    _fd: int | None = None
    _count: int | None = None  # the kernel's count of kills already accounted for
    boot_time: float = 0.0  # epoch seconds of boot, as the samples' start times count from
    # the last two ticks' samples, kept as they are: looked into only when a kill is found
    _generations: list[Generation] = field(default_factory=list)

    def open(self) -> None:
        self._count = _read_vmstat(self.vmstat_path)
        try:
            fd = os.open(self.kmsg_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.source = "vmstat" if self._count is not None else "none"
            log.warning("the kernel log is not readable: OOM kills are counted from /proc/vmstat "
                        "but not attributed (reading it needs root or CAP_SYSLOG)"
                        if self.source == "vmstat" else
                        "OOM kills cannot be seen: neither the kernel log nor /proc/vmstat is "
                        "readable", extra={"fields": {"path": self.kmsg_path,
                                                       "error": exc.strerror or str(exc)}})
            return
        with contextlib.suppress(OSError):  # a file that cannot seek is read from its start
            os.lseek(fd, 0, os.SEEK_END)
        self._fd, self.source = fd, "kmsg"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def poll(self, processes: Sequence[ProcessInfo], samples: Mapping[str, Sample]) -> Found:
        """The kills since the last poll, attributed against this tick's samples and the last
        tick's (a kill between two ticks, a pid reused since: see listener.core.oom)."""
        self._generations = [*self._generations[-1:], (processes, samples)]
        if self._fd is None:
            return Found(uncounted=self._new_count(0))
        kills, lost = self._read_kmsg()
        watched, others = [], []
        seen = [seen_in(p, s, self.boot_time) for p, s in self._generations] if kills else []
        for kill in kills:
            found = attribute(kill, seen)
            if found is None:
                others.append(kill)
            else:
                watched.append((kill, found))
        if not lost:
            if self._count is not None:
                self._count += len(kills)
            return Found(tuple(watched), tuple(others))
        return Found(tuple(watched), tuple(others), self._new_count(len(kills)))

    def _new_count(self, logged: int) -> int:
        """Kills the kernel counted beyond those accounted for and the `logged` ones (one read
        of /proc/vmstat)."""
        now = _read_vmstat(self.vmstat_path)
        if now is None or self._count is None:
            self._count = now
            return 0
        missed = max(0, now - self._count - logged)
        self._count = now
        return missed

    def _read_kmsg(self) -> tuple[list[Kill], bool]:
        """The kill records since the last read, and whether records were lost (EPIPE)."""
        assert self._fd is not None
        kills: list[Kill] = []
        lost = False
        for _ in range(MAX_RECORDS):
            try:
                data = os.read(self._fd, RECORD_MAX)
            except BlockingIOError:
                break
            except BrokenPipeError:  # the ring buffer overwrote records we had not read
                lost = True
                continue
            except OSError as exc:  # EINVAL: a record larger than our buffer
                log.debug("kernel log record not read", extra={"fields": {"error": str(exc)}})
                break
            if not data:
                break
            kill = parse_record(data)
            if kill is not None:
                kills.append(kill)
        return kills, lost

