"""Every setting is declared once (listener.config.settings): the command line of each command,
its --help, the rules file, the defaults of Config and Strategy and README's flag table all
follow from the declarations."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from listener.config.flags import build_parser, flag_table
from listener.config.parse import parse
from listener.config.rulesfile import FILE_KEYS
from listener.config.settings import (
    ADVISE,
    CHECK,
    COMMANDS,
    LISTEN,
    SETTINGS,
    STRATEGY,
    AdviseOptions,
    Config,
    declared,
)
from listener.config.values import ConfigError
from listener.core.rules import Strategy

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_flag_table_is_made_from_the_declarations() -> None:
    text = README.read_text()
    found = re.search(r"<!-- flags:[^\n]*-->\n(.*?)<!-- /flags -->", text, re.S)
    assert found, "README.md has no <!-- flags --> table"
    assert found.group(1) == flag_table(), (
        "README's flag table differs from the declarations; paste this in:\n" + flag_table())


def test_every_field_of_config_advise_and_strategy_has_exactly_one_setting() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    assert {s.name for s in STRATEGY} == {f.name for f in dataclasses.fields(Strategy)}
    plain = {"rules", "command", "advise"}  # made of other settings, or by the command word
    assert {s.name for s in declared(Config)} == {f.name for f in dataclasses.fields(Config)} - plain
    assert {s.name for s in declared(AdviseOptions)} == {f.name for f in dataclasses.fields(AdviseOptions)}


def test_no_flag_is_declared_twice() -> None:
    flags = [f for s in SETTINGS for f in s.flags]
    assert len(flags) == len(set(flags))


def test_nothing_given_means_every_declared_default() -> None:
    assert parse([], environ={}) == Config()
    assert parse(["advise"], environ={}).advise == AdviseOptions()
    assert parse([], environ={}).strategy == Strategy()


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_shows_the_flags_it_takes_and_no_other(command: str) -> None:
    text = build_parser(command).format_help()
    for s in SETTINGS:
        long_flag = s.flags[1] if len(s.flags) > 1 and s.flags[0].startswith("-") \
            and not s.flags[0].startswith("--") else s.flags[0]
        shown = re.search(rf"(?<![\w-]){re.escape(long_flag)}(?![\w-])", text) is not None
        assert shown == (command in s.commands), (command, long_flag)


def test_help_says_each_default_as_people_write_it() -> None:
    text = " ".join(build_parser(LISTEN).format_help().split())
    assert "(default 90s)" in text  # --child-signal-timeout
    assert "(default 1h)" in text  # --restart-window
    assert "(default 5m)" in text  # --resync


@pytest.mark.parametrize(("command", "flag", "said"), [
    (CHECK, "--metrics-port=1", "--metrics-port goes with the listener"),
    (CHECK, "--duration=5s", "--duration goes with advise"),
    (ADVISE, "--listener=http://x", "--listener goes with check"),
    (LISTEN, "--format=json", "--format goes with advise"),
])
def test_a_flag_given_to_a_command_that_does_not_take_it_says_which_does(
        command: str, flag: str, said: str) -> None:
    argv = [flag] if command == LISTEN else [command, flag]
    with pytest.raises(ConfigError, match=said):
        parse(argv, environ={})


def test_a_listeners_command_line_is_taken_by_check_whole() -> None:
    line = ["check", "-a", "1GB", "--metrics-port", "9999", "-m", "ops@example.com"]
    config = parse(line, environ={}, listeners_line=True)
    assert config.command == "check" and config.rules.any == 1024**3


def test_the_rules_file_takes_every_setting_by_its_long_name_but_config_and_listener() -> None:
    assert set(FILE_KEYS) == {s.key for s in SETTINGS} - {"config", "listener"}
    assert FILE_KEYS["sendmail-program"].name == "sendmail"


def test_one_rules_file_serves_every_command(tmp_path: Path) -> None:
    rules = tmp_path / "memwatch.conf"
    rules.write_text("[memwatch]\nmetrics-port = 9999\nmeasure = pss\n\n[any]\nlimit = 1GB\n")
    listen = parse(["--config", str(rules)], environ={})
    check = parse(["check", "--config", str(rules)], environ={})
    assert listen.metrics_port == 9999 and listen.strategy.measure == "pss"
    assert check.rules == listen.rules  # check judges as the listener does
