"""What a new operator types by habit gets an answer that says what they meant: the real
command, run as supervisord would run it (issue 23, item 7)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.harness import ROOT, ListenerProcess, Supervisord, hog, program


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "listener", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)


def test_c_with_a_path_says_that_the_rules_file_is_config(tmp_path: Path) -> None:
    # supervisord's -c is its config file; memmon's (and ours) is --cumulative
    rules = tmp_path / "memwatch.conf"
    rules.write_text("[any]\nlimit = 400MB\n")
    done = run("-c", str(rules))
    assert done.returncode == 2
    assert done.stderr == (f"sentry-memwatch: error: -c is memmon's --cumulative and takes no "
                           f"value; the rules file is --config: --config {rules}\n")
    assert done.stdout == ""


def test_a_size_without_a_unit_gets_its_closest_sensible_reading() -> None:
    done = run("-a", "100000")
    assert done.returncode == 2
    assert "100000 has no unit (it would be 100000 bytes); did you mean 100000KB (97.7MiB)?" \
        in done.stderr
    assert "100000MB" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_help_says_what_the_rules_file_holds() -> None:
    for command in ([], ["check"], ["advise"]):
        text = " ".join(run(*command, "--help").stdout.split())
        for section in ("[memwatch]", "[program:NAME]", "[group:NAME]", "[any]", "limit = SIZE",
                        "child-signal-timeout"):
            assert section in text, (command, section)


def test_a_rules_file_without_a_limit_says_nothing_will_be_restarted(
        supervisord: Callable[[str], Supervisord], listener: Callable[..., ListenerProcess],
        tmp_path: Path) -> None:
    sv = supervisord(program("big", hog("--mb", 40)))
    rules = tmp_path / "memwatch.conf"
    rules.write_text("[memwatch]\nmeasure = pss\nchildren = auto\nconsecutive = 3\n")  # no rule
    lst = listener("--config", rules, server_url=sv.url)
    lst.tick()
    said = [line for line in lst.stderr().splitlines() if "no limit" in line]
    assert len(said) == 1, lst.stderr()
    assert f"no limit in {rules}: nothing will be restarted" in said[0]
    assert "level=warning" in said[0]
