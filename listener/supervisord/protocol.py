"""supervisord's event-listener protocol: READY, header line, payload, RESULT.

stdout carries protocol tokens only; anything else there would put the listener in
supervisord's UNKNOWN state for good, so this module is the only writer of stdout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

MAX_HEADER_LINE = 8192  # supervisord's headers are ~200 characters
MAX_PAYLOAD = 1 << 20  # larger payloads are read in chunks and dropped, never held whole


class ProtocolError(ValueError):
    """A header line or payload that cannot be understood; the event is answered FAIL."""


@dataclass(frozen=True)
class Event:
    headers: dict[str, str]
    payload: str

    @property
    def name(self) -> str:
        return self.headers.get("eventname", "")


def tokens(line: str) -> tuple[dict[str, str], list[str]]:
    """`key:value` tokens split on blanks (a header line, or a state event's payload), and the
    tokens that are not key:value."""
    tokens: dict[str, str] = {}
    bad: list[str] = []
    for token in line.split():
        key, sep, value = token.partition(":")
        if sep and key:
            tokens[key] = value
        else:
            bad.append(token)
    return tokens, bad


def send_ready(stdout: TextIO) -> None:
    stdout.write("READY\n")
    stdout.flush()


def send_result(stdout: TextIO, ok: bool) -> None:
    stdout.write("RESULT 2\nOK" if ok else "RESULT 4\nFAIL")
    stdout.flush()


def read_event(stdin: TextIO) -> Event | None:
    """Read one event; None at end of input. Raises ProtocolError for a malformed event,
    after consuming what belonged to it, so the next call starts at the next header."""
    line = stdin.readline(MAX_HEADER_LINE)
    if line == "":
        return None
    if not line.endswith("\n"):
        if len(line) >= MAX_HEADER_LINE:
            _discard_line(stdin)
            raise ProtocolError(f"header line longer than {MAX_HEADER_LINE} characters")
        raise ProtocolError(f"truncated header line {line[:200]!r}")
    shown = line.rstrip()[:200]
    headers, bad = tokens(line)
    length_text = headers.get("len")
    if length_text is None:
        problem = f"bad header token {bad[0]!r}" if bad else "no len"
        raise ProtocolError(f"{problem} in header line {shown!r}")
    if length_text.startswith("-") and length_text[1:].isdigit():
        raise ProtocolError(f"negative len in header line {shown!r}")
    if not (length_text.isascii() and length_text.isdigit()):
        raise ProtocolError(f"len is not a number in header line {shown!r}")
    length = int(length_text)
    if length > MAX_PAYLOAD:
        _discard(stdin, length)
        raise ProtocolError(f"payload of {length} characters is over {MAX_PAYLOAD}; dropped")
    if bad:  # the payload still belongs to this event: consume it so the next one starts clean
        _discard(stdin, length)
        raise ProtocolError(f"bad header token {bad[0]!r} in header line {shown!r}")
    payload = stdin.read(length)
    if len(payload) < length:
        raise ProtocolError(f"payload ended after {len(payload)} of {length} characters")
    return Event(headers, payload)


def _discard(stdin: TextIO, length: int) -> None:
    while length > 0:
        chunk = stdin.read(min(length, 65536))
        if not chunk:
            return
        length -= len(chunk)


def _discard_line(stdin: TextIO) -> None:
    while True:
        chunk = stdin.readline(65536)
        if not chunk or chunk.endswith("\n"):
            return
