"""Fixtures over tests/harness.py: every supervisord and listener gets a short temp dir and is
stopped at the end of its test.

Tests marked `both_modes` run twice: with the listener listing every process on every tick, and
with its process table kept from supervisord's events (recorded from the real supervisord by a
recorder event listener and handed on before each TICK)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from listener.core.recovery import RetryTiming
from tests.harness import (
    BuiltListener,
    ListenerProcess,
    Relay,
    Supervisord,
    recorder_section,
    short_dir,
)

MODES = ("listing", "events")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_modes: run in listing mode and in events mode")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_modes"):
        metafunc.fixturenames.append("process_table")
        metafunc.parametrize("process_table", MODES, indirect=True)


@pytest.fixture
def process_table(request: pytest.FixtureRequest) -> str:
    """listing (the default) or events."""
    return getattr(request, "param", "listing")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path (unix socket paths are limited to ~100 bytes)."""
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def supervisord(short_tmp: Path, process_table: str) -> Iterator[Callable[[str], Supervisord]]:
    started: list[Supervisord] = []

    def start(sections: str) -> Supervisord:
        if process_table == "events":
            sections = recorder_section(short_tmp) + sections
        sv = Supervisord(sections, short_tmp)
        started.append(sv)
        return sv

    yield start
    for sv in started:
        sv.stop()


@pytest.fixture
def listener(short_tmp: Path, process_table: str) -> Iterator[Callable[..., ListenerProcess]]:
    started: list[ListenerProcess] = []

    def start(*args: object, server_url: str, env: dict[str, str] | None = None,
              prefix: tuple[str, ...] = ()) -> ListenerProcess:
        relay = None
        if process_table == "events":
            relay = Relay(short_tmp / "events.bin")
            args = (*args, "--exclude", "recorder:*")  # the recorder is the test's, not Sentry's
        lst = ListenerProcess([str(a) for a in args], server_url, short_tmp, env, prefix=prefix,
                              relay=relay)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.close()


@pytest.fixture
def built_listener(short_tmp: Path) -> Iterator[Callable[..., BuiltListener]]:
    """In-process listeners (tests.harness.BuiltListener), closed at the end of the test."""
    started: list[BuiltListener] = []

    def start(*args: object, server_url: str, timing: RetryTiming) -> BuiltListener:
        lst = BuiltListener([str(a) for a in args], server_url, short_tmp, timing)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.close()
