"""What a SIGHUP may change (listener.config.reload), and the rules file read with bounds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from listener.config.parse import MAX_FILE_BYTES, parse
from listener.config.reload import reloaded
from listener.config.rulesfile import MAX_ITEMS
from listener.config.values import ConfigError


def config(tmp_path: Path, text: str, *args: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "memwatch.ini"
    path.write_text(text)
    return parse(["--config", str(path), *args], environ={})


def test_settings_made_at_start_keep_their_old_values_and_are_named(tmp_path: Path) -> None:
    old = config(tmp_path, "[memwatch]\nmetrics-port = 9870\nresync = 5m\n[any]\nlimit = 1GB\n")
    new = config(tmp_path, "[memwatch]\nmetrics-port = 9999\nserver-url = unix:///elsewhere.sock\n"
                 "dry-run = true\nresync = 1m\n[any]\nlimit = 500MB\n")
    done = reloaded(old, new)
    assert done.needs_restart == ("metrics-port", "server-url")
    assert (done.config.metrics_port, done.config.server_url) == (old.metrics_port, old.server_url)
    assert done.config.rules == new.rules and done.config.dry_run and done.config.resync == 60


def test_a_reload_that_leaves_no_rule_is_refused(tmp_path: Path) -> None:
    old = config(tmp_path, "[group:web]\nlimit = 1GB\n[any]\nlimit = 2GB\n")
    with pytest.raises(ConfigError, match="no rules .*keeping the 2 in force"):
        reloaded(old, config(tmp_path, ""))
    fewer = reloaded(old, config(tmp_path, "[any]\nlimit = 2GB\n"))
    assert (fewer.rules_before, fewer.rules_after, fewer.needs_restart) == (2, 1, ())
    assert reloaded(config(tmp_path, ""), config(tmp_path, "")).rules_after == 0  # none before


@pytest.mark.parametrize("make, said", [
    (os.mkfifo, "is a FIFO, not a regular file"),
    (lambda p: os.symlink("/dev/zero", p), "is a character device, not a regular file"),
    (os.mkdir, "is a directory, not a regular file"),
    (lambda p: Path(p).write_text("#" * (MAX_FILE_BYTES + 1)), "larger than 256 KiB"),
    (lambda p: Path(p).write_text("[any]\nlimit=1G\n" + "[program:p]\nlimit=1G\n" * 100_000),
     "larger than 256 KiB"),
    (lambda p: Path(p).write_text("".join(f"[program:p{i}]\nlimit=1G\n" for i in range(10_000))),
     f":{2 * MAX_ITEMS + 1}: more than {MAX_ITEMS} rules and values"),
    (lambda p: Path(p).write_text("exclude = " + " ".join(f"x{i}" for i in range(MAX_ITEMS + 1))),
     f":1: more than {MAX_ITEMS} rules and values"),
])
def test_a_rules_file_that_is_no_regular_file_or_too_big_is_one_line(tmp_path: Path, make,
                                                                      said: str) -> None:
    path = tmp_path / "memwatch.ini"
    make(str(path))
    with pytest.raises(ConfigError) as error:
        parse(["--config", str(path)], environ={})
    assert said in str(error.value) and "\n" not in str(error.value)
    assert len(str(error.value)) < 300


def test_the_limits_of_the_log_line_are_bounded(tmp_path: Path) -> None:
    many = config(tmp_path, "".join(f"[program:{'p' * 200}{i}]\nlimit = 1GB\n" for i in range(400)))
    text = many.rules.describe()
    assert len(text) < 500 and text.endswith(" more rules")
    assert config(tmp_path, "[any]\nlimit = 1GB\n").rules.describe() == "any=1.0GiB"
