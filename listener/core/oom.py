"""The kernel's OOM kills, read and attributed: pure parsing of kernel log records and of
/proc/vmstat, and which watched process a kill was (listener.host.oom does the reading).

A kill is attributed by its pid AND by time: the listener's last samples of that pid (the two
latest ticks), whose kernel start time must not be later than the kill. A pid the kernel gave to
a new process after the kill is therefore never blamed for it, and a kill between two ticks is
matched against the samples taken before it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from listener.core.model import SAME_START, ProcessInfo, Sample

MAX_COMM = 64  # a command name longer than this is not the kernel's (TASK_COMM_LEN is 16)
# the name ends at ") total-vm:" where the kernel says it (a name may hold ") "), else at ")"
_KILLED = re.compile(rb"Killed process (\d{1,10}) \((.{0,%d}?)\) total-vm:" % MAX_COMM)
_KILLED_SHORT = re.compile(rb"Killed process (\d{1,10}) \((.{0,%d}?)\)(?: |,|$)" % MAX_COMM)
_FIELD = re.compile(rb"(anon|file|shmem)-rss:(\d{1,20})kB")


@dataclass(frozen=True)
class Kill:
    """One OOM kill, as the kernel logged it."""

    pid: int
    comm: str  # the kernel's name of the process (15 characters at most)
    at: float  # seconds since boot, from the record's timestamp
    rss: int | None  # bytes resident at the kill (anon + file + shmem); None: not logged
    memcg: bool  # a memory cgroup's limit, not the whole host, ran out


@dataclass(frozen=True)
class Seen:
    """A pid the listener sampled: the supervised process or one of its tree."""

    namespec: str
    pid: int
    started: float  # the kernel's start time, seconds since boot
    bytes: int  # its figure at that sample, in `measure`
    measure: str
    worker: bool  # a descendant of the supervised process, not the process itself


def parse_record(data: bytes) -> Kill | None:
    """A /dev/kmsg record (`prio,seq,usec,flags;text` and continuation lines) that says the
    OOM killer killed a process; None for every other record and for anything malformed.
    Only the kernel's own records count: userspace writing to /dev/kmsg gets a facility other
    than 0 (LOG_KERN), so it cannot forge a kill."""
    head, sep, rest = data.partition(b";")
    if not sep:
        return None
    fields = head.split(b",")
    if len(fields) < 3 or not all(f.isdigit() and len(f) <= 20 for f in fields[:3]):
        return None
    if int(fields[0]) >> 3 != 0:  # not LOG_KERN: written by a process, not by the kernel
        return None
    text = rest.partition(b"\n")[0]
    found = _KILLED.search(text) or _KILLED_SHORT.search(text)
    if found is None or int(found.group(1)) <= 0:
        return None
    sizes = {kind: int(kb) * 1024 for kind, kb in _FIELD.findall(text[found.end() - 1:])}
    return Kill(pid=int(found.group(1)),
                comm=found.group(2).decode("utf-8", "replace"),
                at=int(fields[2]) / 1e6,
                rss=sum(sizes.values()) if sizes else None,
                memcg=b"Memory cgroup out of memory" in text[:found.start()])


def vmstat_oom_kills(data: bytes) -> int | None:
    """The kernel's count of OOM kills since boot (/proc/vmstat `oom_kill`); None if absent."""
    for line in data.splitlines():
        name, _, value = line.partition(b" ")
        if name == b"oom_kill":
            return int(value) if value.strip().isdigit() else None
    return None


def seen_in(processes: Iterable[ProcessInfo], samples: Mapping[str, Sample],
            boot_time: float) -> dict[int, Seen]:
    """Every pid this tick's samples measured, by pid (start times turned from epoch seconds,
    as samples keep them, into seconds since boot, as the kernel log stamps a kill)."""
    seen: dict[int, Seen] = {}
    for proc in processes:
        sample = samples.get(proc.namespec)
        if sample is None:
            continue
        for unit in sample.members:
            seen[unit.pid] = Seen(proc.namespec, unit.pid, unit.started - boot_time, unit.bytes,
                                  sample.measure, unit.pid != proc.pid)
    return seen


def attribute(kill: Kill, generations: Sequence[Mapping[int, Seen]]) -> Seen | None:
    """The watched process the kill was, from the latest sample of its pid that started before
    the kill; None when no such sample exists (a process outside supervisord, or one born and
    killed between two ticks)."""
    for seen in reversed(generations):
        found = seen.get(kill.pid)
        if found is not None and found.started <= kill.at + SAME_START:
            return found
    return None
