"""CI runs what the README tells a newcomer to run: the same test command, in parallel."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_test_command() -> str:
    quick_start = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    (command,) = [line for line in quick_start.splitlines() if "pytest" in line]
    return command


def test_ci_runs_the_readmes_test_command_exactly() -> None:
    assert readme_test_command() in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_test_command_runs_in_parallel_with_what_the_test_extra_installs() -> None:
    assert " -n " in readme_test_command()
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    extra = setup["options.extras_require"]["test"].split()
    assert any(requirement.startswith("pytest-xdist") for requirement in extra)
