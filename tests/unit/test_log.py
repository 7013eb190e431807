"""listener.log: one line per record on stderr, with a UTC timestamp and key=value fields."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener import log
from listener.log import JsonFormatter, TextFormatter, fields

CREATED = 1700000000.25  # 2023-11-14T22:13:20.250Z


def record(msg: str = "restarting", level: int = logging.WARNING, extra: dict | None = None,
           exc_info: object = None, args: tuple = ()) -> logging.LogRecord:
    logger = logging.getLogger("memwatch.test")
    rec = logger.makeRecord(logger.name, level, __file__, 1, msg, args, exc_info, extra=extra)
    rec.created = CREATED
    rec.msecs = 250.0
    return rec


def logfmt(line: str) -> dict[str, str]:
    """Parse a logfmt line (values bare or JSON-quoted) back into a dict."""
    pairs = re.findall(r'(\S+?)=("(?:[^"\\]|\\.)*"|\S*)', line)
    return {k: json.loads(v) if v.startswith('"') else v for k, v in pairs}


@pytest.fixture
def memwatch_logger() -> Iterator[logging.Logger]:
    """log.setup() configures the 'memwatch' logger; put it back as it was afterwards."""
    logger = logging.getLogger("memwatch")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


# --- text ---


def test_text_line_has_timestamp_level_message_and_fields() -> None:
    line = TextFormatter().format(record(extra=fields(process="web:web_00", rss="420.0MiB", pid=4242)))
    assert line == ("2023-11-14T22:13:20.250Z level=warning msg=restarting process=web:web_00 "
                    "rss=420.0MiB pid=4242")


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("tab\there", '"tab\\there"'),
        (42, "42"),
        (None, "None"),
        (1.5, "1.5"),
    ],
)
def test_text_values_are_quoted_when_they_need_to_be(value: object, rendered: str) -> None:
    line = TextFormatter().format(record(extra=fields(v=value)))
    assert line.endswith(f" v={rendered}")


def test_text_message_is_quoted_and_formatted_with_its_args() -> None:
    line = TextFormatter().format(record("restarted %s after %.1fs", args=("web:web_00", 2.5)))
    assert logfmt(line)["msg"] == "restarted web:web_00 after 2.5s"


def test_plain_extra_keys_are_fields_too() -> None:
    line = TextFormatter().format(record(extra={"target": "web:web_00"}))
    assert logfmt(line)["target"] == "web:web_00"


def test_text_exception_is_one_quoted_field() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record("tick failed", logging.ERROR, exc_info=sys.exc_info())
    line = TextFormatter().format(rec)
    assert "\n" not in line
    error = logfmt(line)["error"]
    assert error.startswith("Traceback (most recent call last):")
    assert error.endswith("RuntimeError: boom")


# Blanks that logfmt readers split on, other than the space, tab and newline handled below.
_OTHER_BLANKS = [c for c in map(chr, range(0x3000 + 1)) if c.isspace() and c not in " \t\n"]
_logfmt_text = st.text(alphabet=st.characters().filter(lambda c: c not in _OTHER_BLANKS), max_size=40)


@settings(max_examples=200, deadline=None)
@given(msg=_logfmt_text, value=_logfmt_text)
def test_text_record_is_one_line_that_parses_back(msg: str, value: str) -> None:
    line = TextFormatter().format(record(msg, extra=fields(process=value)))
    assert "\n" not in line
    parsed = logfmt(line)
    assert parsed["level"] == "warning"
    assert parsed["msg"] == msg
    assert parsed["process"] == value


@pytest.mark.parametrize("blank", ["\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u2028"],
                         ids=repr)
def test_text_record_quotes_values_holding_any_blank(blank: str) -> None:
    value = f"oops{blank}forged"
    line = TextFormatter().format(record(extra=fields(error=value)))
    assert len(line.splitlines()) == 1
    assert logfmt(line)["error"] == value


# --- JSON ---


def test_json_line() -> None:
    line = JsonFormatter().format(record(extra=fields(process="web:web_00", pid=4242)))
    assert "\n" not in line
    assert json.loads(line) == {"ts": "2023-11-14T22:13:20.250Z", "level": "warning",
                                "logger": "memwatch.test", "msg": "restarting",
                                "process": "web:web_00", "pid": 4242}


def test_json_values_that_are_not_json_become_strings() -> None:
    data = json.loads(JsonFormatter().format(record(extra=fields(path=b"x", when=CREATED, what={1, }))))
    assert data["path"] == "b'x'"
    assert data["when"] == CREATED
    assert data["what"] == "{1}"


def test_json_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        rec = record("oops", logging.ERROR, exc_info=sys.exc_info())
    data = json.loads(JsonFormatter().format(rec))
    assert data["level"] == "error"
    assert data["error"].endswith("ValueError: bad")


# --- setup ---


def test_setup_logs_to_the_given_stream_with_the_chosen_format(memwatch_logger: logging.Logger) -> None:
    out = io.StringIO()
    log.setup("INFO", "json", stream=out)
    logging.getLogger("memwatch.daemon").info("started", extra=fields(server="unix:///s.sock"))
    logging.getLogger("memwatch.daemon").debug("hidden")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["server"] == "unix:///s.sock"


def test_setup_level(memwatch_logger: logging.Logger) -> None:
    out = io.StringIO()
    log.setup("WARNING", "text", stream=out)
    logging.getLogger("memwatch.x").info("quiet")
    logging.getLogger("memwatch.x").warning("loud")
    assert [logfmt(line)["msg"] for line in out.getvalue().splitlines()] == ["loud"]


def test_setup_twice_does_not_duplicate_lines(memwatch_logger: logging.Logger) -> None:
    out = io.StringIO()
    log.setup("INFO", "text", stream=out)
    log.setup("INFO", "text", stream=out)
    logging.getLogger("memwatch").info("once")
    assert len(out.getvalue().splitlines()) == 1


def test_nothing_is_ever_written_to_stdout(memwatch_logger: logging.Logger,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    log.setup("DEBUG", "text")  # the default stream: stderr
    logging.getLogger("memwatch.daemon").error("to stderr", extra=fields(process="web:web_00"))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "msg=\"to stderr\" process=web:web_00" in captured.err


def test_memwatch_logs_do_not_reach_the_root_logger(memwatch_logger: logging.Logger,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    log.setup("INFO", "text", stream=io.StringIO())
    with caplog.at_level(logging.INFO):
        logging.getLogger("memwatch.daemon").info("private")
    assert "private" not in caplog.text
