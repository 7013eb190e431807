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


def journal_name(environ: dict[str, str] | os._Environ[str], server_url: str) -> str:
    """One journal per listener and supervisord: two listeners, or two supervisords with the
    same program names, on one host must never finish each other's restarts."""
    name = environ.get("SUPERVISOR_PROCESS_NAME") or "memwatch"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    server = hashlib.sha256(server_url.encode()).hexdigest()[:12]
    return f"restarts-{safe}-{server}.json"


class Journal:
    """Thread-safe; a journal without a path keeps its record in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, Entry] = {}
        if path is not None:
            self._entries = self._load(path)

    @classmethod
    def open(cls, state_dir: str, environ: dict[str, str] | os._Environ[str],
             server_url: str) -> Journal:
        try:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            path = Path(state_dir) / journal_name(environ, server_url)
            journal = cls(path)
            journal._save()  # fail now, not between a stop and a start
            return journal
        except OSError as exc:
            log.error("cannot keep a restart journal: a listener killed between stop and start "
                      "will not finish that restart", extra=fields(
                          state_dir=state_dir, error=exc.strerror or str(exc)))
            return cls(None)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def get(self, namespec: str) -> Entry | None:
        with self._lock:
            return self._entries.get(namespec)

    def __contains__(self, namespec: str) -> bool:
        with self._lock:
            return namespec in self._entries

    def begin(self, namespec: str, pid: int, now: float) -> None:
        self._change(namespec, Entry(namespec, pid, now))

    def stopped(self, namespec: str, now: float) -> None:
        with self._lock:
            entry = self._entries.get(namespec)
        if entry is not None:
            self._change(namespec, Entry(entry.namespec, entry.pid, entry.began, now))

    def done(self, namespec: str) -> None:
        self._change(namespec, None)

    def _change(self, namespec: str, entry: Entry | None) -> None:
        with self._lock:
            if entry is None:
                if self._entries.pop(namespec, None) is None:
                    return
            else:
                self._entries[namespec] = entry
            try:
                self._save()
            except OSError as exc:
                log.error("cannot write the restart journal", extra=fields(
                    path=str(self.path), error=exc.strerror or str(exc)))

    def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps({"version": 1, "restarts": [asdict(e) for e in self._entries.values()]})
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

    @staticmethod
    def _load(path: Path) -> dict[str, Entry]:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entries = {}
            for item in raw["restarts"]:
                entry = Entry(str(item["namespec"]), int(item["pid"]), float(item["began"]),
                              None if item.get("stopped") is None else float(item["stopped"]))
                entries[entry.namespec] = entry
            return entries
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("restart journal unreadable: starting without it", extra=fields(
                path=str(path), error=str(exc)))
            return {}
