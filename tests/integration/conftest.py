"""Fixtures over tests/harness.py: every supervisord and listener gets a short temp dir and is
stopped at the end of its test."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import ListenerProcess, Supervisord, short_dir


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir with a short path (unix socket paths are limited to ~100 bytes)."""
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def supervisord(short_tmp: Path) -> Iterator[Callable[[str], Supervisord]]:
    started: list[Supervisord] = []

    def start(sections: str) -> Supervisord:
        sv = Supervisord(sections, short_tmp)
        started.append(sv)
        return sv

    yield start
    for sv in started:
        sv.stop()


@pytest.fixture
def listener(short_tmp: Path) -> Iterator[Callable[..., ListenerProcess]]:
    started: list[ListenerProcess] = []

    def start(*args: object, server_url: str, env: dict[str, str] | None = None,
              prefix: tuple[str, ...] = ()) -> ListenerProcess:
        lst = ListenerProcess([str(a) for a in args], server_url, short_tmp, env, prefix=prefix)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.close()
