"""What /proc shows of a process, read once per start: looked at again while young and nothing
was found (a pool's children come after their parent), through a shell wrapper to its child,
and multiprocessing's helpers told from workers."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from listener.core.model import ProcessInfo
from listener.core.servers import Server
from listener.host.procfs import ProcReader
from listener.host.recognition import YOUNG, Recogniser

SPAWNED = ["python3", "-c", "from multiprocessing.spawn import spawn_main; spawn_main()",
           "--multiprocessing-fork"]
TRACKER = ["python3", "-c", "from multiprocessing.resource_tracker import main;main(5)"]


class FakeProc(ProcReader):
    """Command lines and mapped modules by pid, as the test sets them; counts the reads."""

    def __init__(self, argv: Mapping[int, list[str]], modules: Mapping[int, set[str]]) -> None:
        self.argv, self.modules, self.reads = dict(argv), dict(modules), 0

    def cmdline(self, pid: int) -> list[str] | None:
        self.reads += 1
        return self.argv.get(pid)

    def native_modules(self, pid: int) -> frozenset[str]:
        return frozenset(self.modules.get(pid, ()))


def jobs(start: float = 1000.0) -> ProcessInfo:
    return ProcessInfo("jobs", "jobs", 10, "RUNNING", start)


def test_a_young_process_under_auto_is_looked_at_again_until_its_pool_shows() -> None:
    reader = FakeProc({10: ["python3", "jobs.py"], 11: SPAWNED}, {})
    recogniser = Recogniser(reader)
    assert recogniser.servers([jobs()], 1001.0, lambda: {}, auto={"jobs:jobs"}) == {
        "jobs:jobs": Server.PLAIN}
    assert recogniser.servers([jobs()], 1006.0, lambda: {10: [11]}, auto={"jobs:jobs"}) == {
        "jobs:jobs": Server.POOL}


def test_an_old_or_not_auto_process_is_read_once_per_start() -> None:
    reader = FakeProc({10: ["python3", "jobs.py"]}, {})
    recogniser = Recogniser(reader)
    recogniser.servers([jobs()], 1000.0 + YOUNG + 1, lambda: {}, auto={"jobs:jobs"})
    recogniser.servers([jobs()], 1000.0 + 1, lambda: {}, auto=())
    reads = reader.reads
    for now in (1005.0, 1010.0, 2000.0):
        recogniser.servers([jobs()], now, lambda: {}, auto=())
    assert reader.reads == reads


def test_a_shell_wrapper_is_looked_through_to_the_server_it_runs() -> None:
    reader = FakeProc({10: ["/bin/sh", "-c", "granian app:app"], 11: ["granian", "app:app"]},
                      {11: {"_granian", "libc"}})
    found = Recogniser(reader).servers([jobs()], 1001.0, lambda: {10: [11]}, auto={"jobs:jobs"})
    assert found == {"jobs:jobs": Server.GRANIAN}


def test_the_resource_tracker_is_a_helper_and_a_spawned_child_is_not() -> None:
    reader = FakeProc({11: SPAWNED, 12: TRACKER}, {})
    recogniser = Recogniser(reader)
    assert recogniser.helpers([(11, 5.0), (12, 5.0)]) == {12}
    reads = reader.reads
    assert recogniser.helpers([(11, 5.0), (12, 5.0)]) == {12}  # once per process start
    assert reader.reads == reads


def test_a_tree_auto_cannot_tell_is_said_once_as_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    reader = FakeProc({10: ["python3", "jobs.py"], 11: ["python3", "jobs.py"]}, {})
    recogniser = Recogniser(reader)
    with caplog.at_level(logging.INFO, logger="memwatch"):
        for now in (1001.0, 1006.0, 1011.0):
            found = recogniser.servers([jobs()], now, lambda: {10: [11]}, auto={"jobs:jobs"})
            assert found == {"jobs:jobs": Server.UNRECOGNISED}
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "cannot tell" in warned[0].getMessage()
