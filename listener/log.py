"""Logging to stderr with timestamps and key=value fields (or one JSON object per line).

stdout belongs to the event protocol: nothing here ever writes to it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "fields"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", None) or {})
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_"):
            fields[key] = value
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z")


def _quote(value: Any) -> str:
    text = str(value)
    # any blank, separator or control character would split or cut the record: quote, escaped
    if text == "" or not text.isprintable() or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """2026-11-24T10:00:00.123Z level=warning msg="restarting" process=web:web_00 rss=420MiB"""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record), f"level={record.levelname.lower()}",
                 f"msg={_quote(record.getMessage())}"]
        parts += [f"{k}={_quote(v)}" for k, v in _fields(record).items()]
        if record.exc_info:
            parts.append(f"error={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower(),
                                "logger": record.name, "msg": record.getMessage()}
        data.update(_fields(record))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def setup(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("memwatch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def fields(**kw: Any) -> dict[str, Any]:
    """`log.info("msg", extra=fields(process=...))`: fields become key=value pairs."""
    return {"fields": kw}
