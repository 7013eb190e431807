"""A small on-disk record of the processes this listener stopped and has not started again.

Written before every stop and cleared once the process runs again, atomically (temp file,
fsync, rename), so that a listener killed between stop and start (SIGKILL, OOM) finishes the
restart when supervisord starts it again, instead of leaving a target STOPPED for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from listener.log import fields

log = logging.getLogger("memwatch.journal")

MAX_JOURNAL_BYTES = 1 << 20  # far above what a run can owe (~100 bytes per process we stopped)


@dataclass(frozen=True)
class Entry:
    namespec: str
    pid: int  # the pid we stopped
    began: float  # when we decided to stop it (epoch seconds)
    stopped: float | None = None  # when the stop completed, if we saw it complete


def default_state_dir(euid: int | None = None, home: str | None = None) -> str:
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return "/var/lib/sentry-memwatch"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(home or os.path.expanduser("~"),
                                                             ".local", "state")
    return os.path.join(base, "sentry-memwatch")


def journal_name(environ: Mapping[str, str], server_url: str) -> str:
    """One journal per listener and supervisord: two listeners, or two supervisords with the
    same program names, on one host must never finish each other's restarts."""
    name = environ.get("SUPERVISOR_PROCESS_NAME") or "memwatch"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    server = hashlib.sha256(server_url.encode()).hexdigest()[:12]
    return f"restarts-{safe}-{server}.json"


class Journal:
    """The record lives in memory, behind a lock held only to read or change it; each change is
    then written to disk outside that lock, so a reader (the event loop) never waits for an
    fsync. A journal without a path, or whose file cannot be written, keeps working in memory."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        try:
            self._entries: dict[str, Entry] = load(path) if path else {}
        except Untrusted as exc:
            log.error("state dir not trusted: its journal is not acted on, and restarts are "
                      "tracked in memory only (give it to this user and chmod go-w)",
                      extra=fields(path=str(exc.path), reason=exc.reason))
            self._entries, path = {}, None  # neither read nor written: others could change it
        self.path = path
        # one writer at a time, each writing the state as it is when its turn comes: the last
        # write always holds the newest state
        self._save_lock = threading.Lock()
        self._failing = False

    @classmethod
    def open(cls, state_dir: str, environ: Mapping[str, str],
             server_url: str) -> Journal:
        journal = cls(Path(state_dir) / journal_name(environ, server_url))
        if journal.path is None:
            return journal
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            journal._write()  # fail now, not between a stop and a start
        except OSError as exc:
            log.error("cannot write the restart journal: restarts are tracked in memory only, and "
                      "one cut short by a listener kill will not be finished by the next run",
                      extra=fields(state_dir=state_dir, error=exc.strerror or str(exc)))
            journal._failing = True
        return journal

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def get(self, namespec: str) -> Entry | None:
        with self._lock:
            return self._entries.get(namespec)

    def begin(self, namespec: str, pid: int, now: float) -> None:
        self._change(namespec, lambda old: Entry(namespec, pid, now))

    def stopped(self, namespec: str, now: float) -> None:
        self._change(namespec, lambda old: old and Entry(old.namespec, old.pid, old.began, now))

    def done(self, namespec: str) -> None:
        self._change(namespec, lambda old: None)

    def _change(self, namespec: str, change: Callable[[Entry | None], Entry | None]) -> None:
        with self._lock:
            old = self._entries.get(namespec)
            new = change(old)
            if new == old:
                return
            if new is None:
                del self._entries[namespec]
            else:
                self._entries[namespec] = new
        self._save()

    def _save(self) -> None:
        with self._save_lock:
            try:
                self._write()
            except OSError as exc:
                if not self._failing:  # said once per failure, not on every change
                    log.error("cannot write the restart journal", extra=fields(
                        path=str(self.path), error=exc.strerror or str(exc)))
                self._failing = True
                return
            if self._failing:
                log.info("restart journal written again", extra=fields(path=str(self.path)))
                self._failing = False

    def _write(self) -> None:
        with self._lock:
            data = json.dumps({"version": 1, "restarts": [asdict(e) for e in self._entries.values()]})
        if self.path is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".journal-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class Untrusted(Exception):
    """A state dir or journal file that someone other than this user (or root) can change."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def check_owner(st: os.stat_result, path: Path, euid: int) -> None:
    """Trusted as ssh trusts its files: owned by this user or root, not writable by group or
    others. Raises Untrusted."""
    if st.st_uid not in (euid, 0):
        raise Untrusted(path, f"owned by uid {st.st_uid}, not by this user (uid {euid}) or root")
    if st.st_mode & 0o022:
        raise Untrusted(path, f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def read_trusted(path: Path) -> bytes | None:
    """The journal's bytes (None if there is none), read through descriptors whose owner and
    mode were checked: a directory swapped after the check is never read. Raises Untrusted,
    OSError."""
    euid = os.geteuid()
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        check_owner(os.fstat(dir_fd), path.parent, euid)
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            check_owner(st, path, euid)
            if not stat.S_ISREG(st.st_mode):
                raise Untrusted(path, "not a regular file")
            return f.read(MAX_JOURNAL_BYTES + 1)
    finally:
        os.close(dir_fd)


def load(path: Path) -> dict[str, Entry]:
    """The entries of a journal file. A file that cannot be parsed is set aside (renamed) with
    one error line, never a crash: a listener that cannot start is worse than a lost entry.
    Raises Untrusted for a file or directory others can change."""
    try:
        raw = read_trusted(path)
    except NotADirectoryError:
        return {}
    except OSError as exc:
        log.error("cannot read the restart journal: starting without it", extra=fields(
            path=str(path), error=exc.strerror or str(exc)))
        return {}
    if raw is None:
        return {}
    try:
        if len(raw) > MAX_JOURNAL_BYTES:
            raise ValueError(f"larger than {MAX_JOURNAL_BYTES} bytes")
        entries = {}
        for item in json.loads(raw)["restarts"]:
            entry = Entry(str(item["namespec"]), int(item["pid"]), float(item["began"]),
                          None if item.get("stopped") is None else float(item["stopped"]))
            entries[entry.namespec] = entry
        return entries
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        aside = path.with_name(path.name + ".unreadable")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.error("restart journal unreadable: set aside, starting without it", extra=fields(
            path=str(path), set_aside=str(aside), error=f"{type(exc).__name__}: {exc}"[:200]))
        return {}
