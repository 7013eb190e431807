"""/proc read directly: one open, read and close per file, nothing kept open between ticks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import psutil

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MAX_MAPS = 4 << 20  # bytes of /proc/PID/maps read at most (~300 mappings take 30 KiB)


@dataclass(frozen=True)
class ProcStat:
    """What /proc/PID/stat says of a process."""

    ppid: int
    state: str  # R, S, D, Z, ...
    since_boot: float  # start time, seconds after boot (CLOCK_BOOTTIME)
    started: float  # the same as epoch seconds
    # CPU seconds used by the process and by its children it has waited for: summed over a
    # tree, a child's time stays counted after it exits (it moves into its parent's)
    cpu: float = 0.0


class ProcReader:
    """The /proc files the listener reads. RSS comes from statm, as psutil's memory_info() reads
    it; /proc/PID/stat's rss field is not used: since Linux 6.2 it is an approximate count."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self.boot_time = psutil.boot_time()
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _read(self, pid: int, name: str) -> bytes | None:
        """The file's content; None if the process is gone. Other OSErrors propagate."""
        try:
            fd = os.open(f"{self.proc_root}/{pid}/{name}", os.O_RDONLY)
        except (FileNotFoundError, ProcessLookupError):
            return None
        try:
            return os.read(fd, 4096)
        except ProcessLookupError:  # exited between open and read
            return None
        finally:
            os.close(fd)

    def stat(self, pid: int) -> ProcStat | None:
        data = self._read(pid, "stat")
        if data is None:
            return None
        # comm may hold spaces and parentheses: the fields start after the last ')'
        fields = data[data.rfind(b")") + 2:].split(None, 20)
        try:
            since_boot = int(fields[19]) / self.ticks
            cpu = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / self.ticks
            return ProcStat(int(fields[1]), fields[0].decode(), since_boot,
                            self.boot_time + since_boot, cpu)
        except (IndexError, ValueError):
            return None

    def cmdline(self, pid: int) -> list[str] | None:
        """argv of a process; None when it is gone or unreadable (a kernel thread has none)."""
        try:
            with open(f"{self.proc_root}/{pid}/cmdline", "rb") as f:
                data = f.read(8192)
        except OSError:
            return None
        return [a.decode("utf-8", "replace") for a in data.rstrip(b"\0").split(b"\0")] if data else []

    def native_modules(self, pid: int) -> frozenset[str]:
        """The shared objects a process maps, by name up to the first dot (`_granian`,
        `pyuwsgi`, `libc`): what runs, whatever the process's title. Empty when unreadable."""
        try:
            with open(f"{self.proc_root}/{pid}/maps", "rb") as f:
                data = f.read(MAX_MAPS)
        except OSError:
            return frozenset()
        names = set()
        for line in data.splitlines():
            path = line.rpartition(b" ")[2]
            if b".so" in path:
                names.add(path.rpartition(b"/")[2].partition(b".")[0].decode("utf-8", "replace"))
        return frozenset(names)

    def caught_signals(self, pid: int) -> frozenset[int] | None:
        """The signals a process has a handler for (SigCgt in /proc/PID/status: bit n-1 is
        signal n); None when it is gone or the line is unreadable."""
        data = self._read(pid, "status")
        for line in (data or b"").splitlines():
            if line.startswith(b"SigCgt:"):
                try:
                    mask = int(line.split()[1], 16)
                except (IndexError, ValueError):
                    return None
                return frozenset(n + 1 for n in range(mask.bit_length()) if mask >> n & 1)
        return None

    def rss(self, pid: int) -> int | None:
        data = self._read(pid, "statm")
        return None if data is None else int(data.split()[1]) * PAGE_SIZE

    def scan(self) -> dict[int, ProcStat]:
        """Every process now; those that cannot be read are left out."""
        table: dict[int, ProcStat] = {}
        for name in os.listdir(self.proc_root):
            if name.isdigit():
                try:
                    stat = self.stat(int(name))
                except OSError:
                    continue
                if stat is not None:
                    table[int(name)] = stat
        return table


def children_map(table: dict[int, ProcStat]) -> dict[int, list[int]]:
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
