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
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from listener.log import fields

log = logging.getLogger("memwatch.journal")


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
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = load(path) if path else {}
        # one writer at a time, each writing the state as it is when its turn comes: the last
        # write always holds the newest state
        self._save_lock = threading.Lock()
        self._failing = False

    @classmethod
    def open(cls, state_dir: str, environ: Mapping[str, str],
             server_url: str) -> Journal:
        path = Path(state_dir) / journal_name(environ, server_url)
        journal = cls(path)
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


def load(path: Path) -> dict[str, Entry]:
    """The entries of a journal file. A file that cannot be parsed is set aside (renamed) with
    one error line, never a crash: a listener that cannot start is worse than a lost entry."""
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        log.error("cannot read the restart journal: starting without it", extra=fields(
            path=str(path), error=exc.strerror or str(exc)))
        return {}
    try:
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
