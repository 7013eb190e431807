"""Memory of supervised processes, read straight from /proc (never `ps`).

One pass per tick: with --children sum/each, a single scan of /proc builds the parent->children
map for every supervised tree at once, so the cost stays linear in the number of processes.
RSS is read from /proc/PID/statm, as psutil's memory_info() reads it, without its per-call
overhead (/proc/PID/stat's rss field is not used: since Linux 6.2 it is an approximate per-CPU
count); stat and statm files stay open across ticks (ProcFiles). PSS/USS come from psutil,
whose Process objects are cached across ticks, keyed by (pid, start time) so a reused pid is
never mistaken for the process we knew.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
from collections import Counter
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

import psutil

from listener.model import ProcessInfo, Sample, Unit

log = logging.getLogger("memwatch.sampler")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

VANISHED = "vanished"
ZOMBIE = "zombie"
ACCESS_DENIED = "access_denied"


@dataclass
class SampleResult:
    samples: dict[str, Sample]
    errors: Counter[str]


@dataclass(frozen=True)
class ProcEntry:
    ppid: int
    started: float  # epoch seconds


class ProcFiles:
    """One kind of /proc/PID file (stat, statm), kept open across ticks: a read is one
    pread(2) instead of open+read+close, a third of the cost. A kept descriptor belongs to one
    process: once that process is gone its reads fail with ESRCH, even if the pid has been
    reused, and the file is opened anew. At most `limit` descriptors are kept (an eighth of the
    open-file limit by default); beyond that, files are opened and closed as they are read. If
    the process runs out of descriptors all the same, the kept ones are given back and fewer
    are kept from then on: a watchdog must not starve its own sockets."""

    def __init__(self, proc_root: str, name: str, limit: int | None = None) -> None:
        self.proc_root = proc_root
        self.name = name
        self.limit = _default_fd_limit() if limit is None else limit
        self._fds: dict[int, int] = {}

    def read(self, pid: int) -> bytes | None:
        """The file's content now; None if the process is gone. Other errors (permission...)
        propagate."""
        fd = self._fds.get(pid)
        if fd is not None:
            try:
                return os.pread(fd, 4096, 0)
            except ProcessLookupError:  # that process is gone; the pid may be another's now
                pass
            except OSError:
                self._close(pid)
                raise
            self._close(pid)
        try:
            fd = self._open(f"{self.proc_root}/{pid}/{self.name}")
        except (FileNotFoundError, ProcessLookupError):
            return None
        try:
            data = os.pread(fd, 4096, 0)
        except ProcessLookupError:  # exited between open and read
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if len(self._fds) < self.limit:
            self._fds[pid] = fd
        else:
            os.close(fd)
        return data

    def _open(self, path: str) -> int:
        try:
            return os.open(path, os.O_RDONLY)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or not self._fds:
                raise
        self.limit = len(self._fds) // 2
        self.close()
        return os.open(path, os.O_RDONLY)

    def keep_only(self, pids: Container[int]) -> None:
        """Close the files of processes not in pids (gone, or no longer watched)."""
        for pid in [p for p in self._fds if p not in pids]:
            self._close(pid)

    def close(self) -> None:
        self.keep_only(())

    def _close(self, pid: int) -> None:
        os.close(self._fds.pop(pid))


def _default_fd_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 512 if soft == resource.RLIM_INFINITY else max(0, min(soft // 8, 2048))


class ProcScanner:
    """One read of /proc/*/stat per process: parent pid and start time of everything running.
    Also holds the kept-open /proc files of the processes it reads (see ProcFiles)."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self.boot_time = psutil.boot_time()
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.stat = ProcFiles(proc_root, "stat")
        self.statm = ProcFiles(proc_root, "statm")

    def scan(self) -> dict[int, ProcEntry]:
        table: dict[int, ProcEntry] = {}
        listed: set[int] = set()
        for name in os.listdir(self.proc_root):
            if not name.isdigit():
                continue
            pid = int(name)
            listed.add(pid)
            try:
                data = self.stat.read(pid)
            except OSError:
                continue
            if data is None:  # exited since the listdir
                continue
            # comm may hold spaces and parentheses: the fields start after the last ')'
            fields = data[data.rfind(b")") + 2:].split(None, 20)
            try:
                table[pid] = ProcEntry(
                    ppid=int(fields[1]),
                    started=self.boot_time + int(fields[19]) / self.ticks,
                )
            except (IndexError, ValueError):
                continue
        self.stat.keep_only(listed)
        return table

    def close(self) -> None:
        self.stat.close()
        self.statm.close()


def children_map(table: dict[int, ProcEntry]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, entry in table.items():
        children.setdefault(entry.ppid, []).append(pid)
    return children


def descendants(pid: int, children: dict[int, list[int]]) -> Iterator[int]:
    """Every descendant of pid, parents before their children."""
    seen = {pid}
    stack = list(reversed(children.get(pid, ())))
    while stack:
        child = stack.pop()
        if child in seen:
            continue
        seen.add(child)
        yield child
        stack.extend(reversed(children.get(child, ())))


class Sampler:
    def __init__(self, measure: str = "rss", children: str = "none",
                 scanner: ProcScanner | None = None) -> None:
        self.measure = measure
        self.children = children
        self.scanner = scanner or ProcScanner()
        self._cache: dict[tuple[int, float], psutil.Process] = {}
        self._reported: set[str] = set()

    def sample(self, processes: Iterable[ProcessInfo]) -> SampleResult:
        errors: Counter[str] = Counter()
        samples: dict[str, Sample] = {}
        used: dict[tuple[int, float], psutil.Process] = {}
        rss = self.measure == "rss"
        read_pids: set[int] = set()
        running = [p for p in processes if p.pid > 0 and p.statename == "RUNNING"]
        table: dict[int, ProcEntry] = {}
        kids: dict[int, list[int]] = {}
        if self.children != "none" and running:
            table = self.scanner.scan()
            kids = children_map(table)
        for proc in running:
            units: list[Unit] = []
            measures: set[str] = set()
            pids = [(proc.pid, proc.start)]
            if self.children != "none":
                if proc.pid not in table:
                    errors[VANISHED] += 1
                    continue
                pids = [(proc.pid, table[proc.pid].started)]
                pids += [(p, table[p].started) for p in descendants(proc.pid, kids)]
            for index, (pid, started) in enumerate(pids):
                read_pids.add(pid)
                read = (self._read_rss(pid, errors) if rss
                        else self._read(pid, started, used, errors))
                if read is None:
                    if index == 0:  # the supervised pid itself is gone: no figure at all
                        break
                    continue
                value, measure = read
                measures.add(measure)
                units.append(Unit(pid, value, started))
            if not units or units[0].pid != proc.pid:
                continue
            if self.children == "sum":
                value = sum(u.bytes for u in units)
            elif self.children == "each":
                value = max(u.bytes for u in units)
            else:
                value = units[0].bytes
            samples[proc.namespec] = Sample(
                value=value,
                measure="rss" if "rss" in measures else self.measure,
                children=len(units) - 1,
                units=tuple(units) if self.children == "each" else (),
            )
        self._cache = used
        # keep the files of what was read now, close the others (all of them after a reload
        # to another measure or mode)
        self.scanner.statm.keep_only(read_pids if rss else ())
        if self.children == "none":
            self.scanner.stat.keep_only(())
        return SampleResult(samples, errors)

    def _read_rss(self, pid: int, errors: Counter[str]) -> tuple[int, str] | None:
        """Resident pages from /proc/PID/statm, as psutil's memory_info().rss reads them."""
        try:
            data = self.scanner.statm.read(pid)
        except PermissionError:
            errors[ACCESS_DENIED] += 1
            self._report_once(ACCESS_DENIED, f"memory of pid {pid} is not readable (permissions)")
            return None
        if data is None:
            errors[VANISHED] += 1
            return None
        return int(data.split()[1]) * PAGE_SIZE, "rss"

    def _read(self, pid: int, started: float, used: dict[tuple[int, float], psutil.Process],
              errors: Counter[str]) -> tuple[int, str] | None:
        key = (pid, round(started, 1))
        try:
            process = self._cache.get(key) or psutil.Process(pid)
            used[key] = process
            try:
                full = process.memory_full_info()
            except psutil.AccessDenied:
                reason = f"{self.measure}_denied"
                errors[reason] += 1
                self._report_once(reason, f"{self.measure} of pid {pid} is not readable "
                                  "(permissions or kernel); using rss for such pids")
                return process.memory_info().rss, "rss"
            return int(getattr(full, self.measure)), self.measure
        except psutil.ZombieProcess:
            errors[ZOMBIE] += 1
        except psutil.NoSuchProcess:
            errors[VANISHED] += 1
        except psutil.AccessDenied:
            errors[ACCESS_DENIED] += 1
            self._report_once(ACCESS_DENIED, f"memory of pid {pid} is not readable (permissions)")
        used.pop(key, None)
        return None

    def _report_once(self, reason: str, message: str) -> None:
        if reason not in self._reported:
            self._reported.add(reason)
            log.warning(message, extra={"fields": {"reason": reason}})
