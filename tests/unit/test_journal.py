"""The restart journal: what it keeps across listener runs, and what it does when its disk or
its file misbehaves."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from listener.actions.journal import Entry, Journal, journal_name

ENV = {"SUPERVISOR_PROCESS_NAME": "memwatch"}
URL = "unix:///var/run/supervisor.sock"


def journal_file(state_dir: Path) -> Path:
    return state_dir / journal_name(ENV, URL)


def test_a_restart_begun_and_stopped_is_read_back_by_the_next_run(tmp_path: Path) -> None:
    first = Journal.open(str(tmp_path), ENV, URL)
    first.begin("web:web", 42, 1000.0)
    first.stopped("web:web", 1001.0)
    assert Journal.open(str(tmp_path), ENV, URL).entries() == [Entry("web:web", 42, 1000.0, 1001.0)]
    first.done("web:web")
    assert Journal.open(str(tmp_path), ENV, URL).entries() == []


@pytest.mark.parametrize("text", [
    '{"version": 1, "restarts": [{"namespec": "web:web", "pid": 1e400, "began": 1}]}',
    '{"version": 1, "restarts": [{"namespec": "web:web", "pid": NaN, "began": 1}]}',
    "[" * 100_000 + "]" * 100_000,
    '{"version": 1, "restarts": "nope"}',
    "\x00\xff not json",
])
def test_an_unreadable_journal_is_set_aside_with_one_error_and_the_listener_starts(
        tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture) -> None:
    path = journal_file(tmp_path)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    with caplog.at_level(logging.ERROR, logger="memwatch"):
        journal = Journal.open(str(tmp_path), ENV, URL)
    assert journal.entries() == []
    assert [r.getMessage() for r in caplog.records] == [
        "restart journal unreadable: set aside, starting without it"]
    assert path.with_name(path.name + ".unreadable").read_text(
        encoding="utf-8", errors="surrogateescape") == text
    assert json.loads(path.read_text())["restarts"] == []  # a fresh one is written


def test_a_state_dir_that_cannot_be_written_keeps_the_journal_in_memory_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with caplog.at_level(logging.ERROR, logger="memwatch"):
        journal = Journal.open(str(blocker / "state"), ENV, URL)  # a dir under a file: ENOTDIR
        journal.begin("web:web", 42, 1000.0)
        journal.done("web:web")
        journal.begin("worker:worker", 43, 1000.0)
    assert [e.namespec for e in journal.entries()] == ["worker:worker"]
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and errors[0].startswith("cannot write the restart journal")


NOBODY = 65534


@pytest.mark.parametrize("change", ["dir owned by another user", "dir writable by others",
                                    "file writable by others", "file owned by another user"])
def test_a_journal_others_can_change_is_neither_read_nor_written(
        tmp_path: Path, change: str, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    first = Journal.open(str(state), ENV, URL)
    first.begin("web:web", 42, 1000.0)
    path = journal_file(state)
    {"dir owned by another user": lambda: os.chown(state, NOBODY, -1),
     "dir writable by others": lambda: state.chmod(0o777),
     "file writable by others": lambda: path.chmod(0o666),
     "file owned by another user": lambda: os.chown(path, NOBODY, -1)}[change]()
    written = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="memwatch.journal"):
        second = Journal.open(str(state), ENV, URL)
    assert second.entries() == [] and second.path is None
    (line,) = [r for r in caplog.records if r.name == "memwatch.journal"]
    assert line.getMessage().startswith("state dir not trusted")
    second.begin("worker:worker", 7, 2000.0)  # kept in memory, never written there
    assert path.read_bytes() == written and sorted(os.listdir(state)) == [path.name]


def test_a_journal_of_this_user_with_a_private_mode_is_trusted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Journal.open(str(state), ENV, URL).begin("web:web", 42, 1000.0)
    state.chmod(0o755)  # readable by others is fine: only writing is a way in
    assert [e.namespec for e in Journal.open(str(state), ENV, URL).entries()] == ["web:web"]
