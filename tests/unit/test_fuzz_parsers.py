"""Hostile input to every parser: a clear ConfigError/ValueError, never anything else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from listener.config.parse import parse
from listener.config.rulesfile import file_to_argv
from listener.config.settings import SETTINGS
from listener.config.values import ConfigError
from listener.core.text import parse_duration, parse_size

FLAGS = ["-p", "-g", "-a", "-c", "-m", "-s", "-u", "-n", "--measure", "--children",
         "--child-signal", "--consecutive", "--grace", "--max-restarts", "--restart-window",
         "--max-parallel", "--exclude", "--dry-run", "--metrics-port", "--log-level", "check"]
words = st.one_of(st.sampled_from(FLAGS), st.text(max_size=12),
                  st.sampled_from(["web=400MB", "a:b=1GB", "g:*=1.5G", "=", "x=", "HUP", "each",
                                   "-1", "0", "1e9", "400MiB", "10m"]))


@settings(max_examples=300, deadline=None)
@given(argv=st.lists(words, max_size=8))
def test_any_command_line_parses_or_fails_with_one_line(argv: list[str]) -> None:
    try:
        parse(argv, environ={})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
    except SystemExit as exc:  # only --help exits, and successfully
        assert exc.code == 0


ini_lines = st.one_of(st.text(max_size=40), st.sampled_from([
    "[sentry-memwatch]", "any = 400MB", "program = web=1GB other=2GB", "dry-run = maybe",
    "children: each", "  continued", "= nothing", "unknown = 1", "consecutive = -3",
    "password = secret", "measure = pss",
    # rule sections
    "[memwatch]", "[group:web]", "[program:web:*]", "[any]", "[grup:x]", "[program:]", "[",
    "limit = 1GB", "limit = 400", "limit: 2GB,children=each", "children = auto",
    "child-signal = HUP", "child_signal_timeout = 2m", "max-restarts = x", "limit = 1GB ; comment"]))


@settings(max_examples=1000, deadline=None)
@given(lines=st.lists(ini_lines, max_size=10))
def test_any_config_file_text_parses_or_fails_naming_the_file(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        argv = file_to_argv(text, "memwatch.ini", {s.name for s in SETTINGS})
    except ConfigError as exc:
        assert str(exc).startswith("memwatch.ini:") and "\n" not in str(exc)
        assert not str(exc).startswith("memwatch.ini:0:"), "a line that exists"
        return
    try:
        parse(argv, environ={})
    except ConfigError as exc:  # cross-option rules (e.g. --child-signal without each)
        assert "\n" not in str(exc)


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=30))
def test_sizes_and_durations_parse_or_raise_value_error(text: str) -> None:
    for parser in (parse_size, parse_duration):
        try:
            assert parser(text) >= 0
        except ValueError as exc:
            assert repr(text) in str(exc) or "too" in str(exc)
