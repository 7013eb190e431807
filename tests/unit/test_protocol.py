"""listener.supervisord.protocol: supervisord's event-listener protocol, byte for byte."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.supervisord.protocol import (
    MAX_HEADER_LINE,
    MAX_PAYLOAD,
    Event,
    ProtocolError,
    read_event,
    send_ready,
    send_result,
)

TICK_HEADER = "ver:3.0 server:supervisor serial:21 pool:memwatch poolserial:10 eventname:TICK_5 len:15\n"
TICK_PAYLOAD = "when:1700000000"
TICK = TICK_HEADER + TICK_PAYLOAD
TICK_HEADERS = {"ver": "3.0", "server": "supervisor", "serial": "21", "pool": "memwatch",
                "poolserial": "10", "eventname": "TICK_5", "len": "15"}


def event_text(payload: str, serial: int = 22, eventname: str = "TICK_5") -> str:
    return (f"ver:3.0 server:supervisor serial:{serial} pool:memwatch poolserial:{serial - 11} "
            f"eventname:{eventname} len:{len(payload)}\n{payload}")


def stream(text: str) -> io.StringIO:
    return io.StringIO(text)


class RecordingStream(io.StringIO):
    """A StringIO that remembers how much each read() asked for."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.requested: list[int] = []

    def read(self, size: int | None = -1) -> str:
        self.requested.append(-1 if size is None else size)
        return super().read(size)


class FlushCounter(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


# --- reading events ---


def test_reads_a_well_formed_tick_event() -> None:
    event = read_event(stream(TICK))
    assert event == Event(TICK_HEADERS, TICK_PAYLOAD)
    assert event.name == "TICK_5"
    assert event.payload == "when:1700000000"


def test_reads_events_one_after_another() -> None:
    s = stream(TICK + event_text("when:1700000005", serial=22) + event_text("when:1700000010", serial=23))
    whens = []
    while (event := read_event(s)) is not None:
        whens.append(event.payload)
    assert whens == ["when:1700000000", "when:1700000005", "when:1700000010"]


def test_reads_a_payload_with_newlines_and_a_body() -> None:
    payload = "processname:web groupname:web pid:42 channel:stdout\nline one\nline two\n"
    s = stream(event_text(payload, eventname="PROCESS_LOG_STDOUT") + TICK)
    event = read_event(s)
    assert event is not None
    assert event.payload == payload
    assert read_event(s) == Event(TICK_HEADERS, TICK_PAYLOAD)


def test_len_counts_characters_not_bytes() -> None:
    payload = "processname:wéb groupname:wèb from_state:RUNNING"
    s = stream(event_text(payload, eventname="PROCESS_STATE_STOPPED") + TICK)
    assert read_event(s).payload == payload
    assert read_event(s) == Event(TICK_HEADERS, TICK_PAYLOAD)


def test_an_empty_payload() -> None:
    s = stream("ver:3.0 eventname:SUPERVISOR_STATE_CHANGE_RUNNING len:0\n" + TICK)
    assert read_event(s) == Event({"ver": "3.0", "eventname": "SUPERVISOR_STATE_CHANGE_RUNNING",
                                   "len": "0"}, "")
    assert read_event(s) == Event(TICK_HEADERS, TICK_PAYLOAD)


@pytest.mark.parametrize(
    ("line", "headers"),
    [
        ("url:http://x:9001/ a: len:0\n", {"url": "http://x:9001/", "a": "", "len": "0"}),  # first colon
        ("  a:1   b:2  len:0  \n", {"a": "1", "b": "2", "len": "0"}),  # any run of blanks separates
        ("a:1 a:2 len:0\n", {"a": "2", "len": "0"}),  # the last of a repeated key wins
    ],
)
def test_header_line_is_split_into_key_value_tokens(line: str, headers: dict[str, str]) -> None:
    s = stream(line + TICK)
    assert read_event(s) == Event(headers, "")
    assert read_event(s) == Event(TICK_HEADERS, TICK_PAYLOAD)


def test_end_of_input_is_none() -> None:
    assert read_event(stream("")) is None
    s = stream(TICK)
    read_event(s)
    assert read_event(s) is None


def test_an_event_without_a_name() -> None:
    event = read_event(stream("len:2\nhi"))
    assert event is not None
    assert event.name == ""


# --- malformed events: ProtocolError, and the next event is still read ---


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("garbage\n", "bad header token 'garbage'"),
        ("ver:3.0 :nokey len:0\n", "bad header token ':nokey'"),
        ("ver:3.0 eventname:TICK_5\n", "no len"),
        ("\n", "no len"),
        ("ver:3.0 eventname:TICK_5 len:abc\n", "len is not a number"),
        ("ver:3.0 eventname:TICK_5 len:\n", "len is not a number"),
        ("ver:3.0 eventname:TICK_5 len:1.5\n", "len is not a number"),
        ("ver:3.0 eventname:TICK_5 len:-15\n", "negative len"),
    ],
)
def test_malformed_header_raises_and_the_next_event_is_read_correctly(bad: str, message: str) -> None:
    s = stream(bad + TICK)
    with pytest.raises(ProtocolError, match=message):
        read_event(s)
    assert read_event(s) == Event(TICK_HEADERS, TICK_PAYLOAD)
    assert read_event(s) is None


def test_malformed_header_with_a_payload_does_not_spill_into_the_next_event() -> None:
    s = stream("ver:3.0 bogus eventname:TICK_5 len:15\n" + TICK_PAYLOAD + TICK)
    with pytest.raises(ProtocolError, match="bad header token 'bogus'"):
        read_event(s)
    assert read_event(s) == Event(TICK_HEADERS, TICK_PAYLOAD)


def test_truncated_payload() -> None:
    s = stream(TICK_HEADER + "when:17")
    with pytest.raises(ProtocolError, match="payload ended after 7 of 15 characters"):
        read_event(s)
    assert read_event(s) is None


def test_truncated_header_line() -> None:
    s = stream("ver:3.0 eventname:TICK_5 le")
    with pytest.raises(ProtocolError, match="truncated header line"):
        read_event(s)
    assert read_event(s) is None


def test_header_line_longer_than_the_limit_is_discarded_whole() -> None:
    s = stream("x:" + "y" * (3 * MAX_HEADER_LINE) + "\n" + TICK)
    with pytest.raises(ProtocolError, match="longer than"):
        read_event(s)
    assert read_event(s) == Event(TICK_HEADERS, TICK_PAYLOAD)


def test_header_line_just_under_the_limit_is_read() -> None:
    filler = "x:" + "y" * (MAX_HEADER_LINE - len("x: len:2\n") - 1)
    line = f"{filler} len:2\n"
    assert len(line) == MAX_HEADER_LINE - 1
    assert read_event(stream(line + "hi")).payload == "hi"


def test_oversized_payload_is_dropped_and_the_next_event_is_read() -> None:
    length = MAX_PAYLOAD + 10
    s = RecordingStream(f"ver:3.0 eventname:PROCESS_LOG_STDOUT len:{length}\n" + "z" * length + TICK)
    with pytest.raises(ProtocolError, match="dropped"):
        read_event(s)
    assert max(s.requested) <= 65536  # read in chunks, never held whole
    assert read_event(s) == Event(TICK_HEADERS, TICK_PAYLOAD)


def test_huge_len_is_discarded_in_chunks_without_allocating_it() -> None:
    s = RecordingStream("ver:3.0 eventname:TICK_5 len:10000000000\n" + "z" * 200_000)
    with pytest.raises(ProtocolError, match="10000000000"):
        read_event(s)
    assert max(s.requested) <= 65536
    assert len(s.requested) < 10  # stops at the end of input instead of asking for 10 GB
    assert read_event(s) is None


def test_payload_up_to_the_limit_is_read_whole() -> None:
    payload = "p" * MAX_PAYLOAD
    event = read_event(stream(f"len:{MAX_PAYLOAD}\n{payload}"))
    assert event is not None
    assert event.payload == payload


# --- writing ---


def test_ready_is_exactly_ready_newline_and_flushed() -> None:
    out = FlushCounter()
    send_ready(out)
    assert out.getvalue() == "READY\n"
    assert out.flushes == 1


@pytest.mark.parametrize(("ok", "text"), [(True, "RESULT 2\nOK"), (False, "RESULT 4\nFAIL")])
def test_result_framing_is_byte_exact_and_flushed(ok: bool, text: str) -> None:
    out = FlushCounter()
    send_result(out, ok)
    assert out.getvalue() == text
    assert out.flushes == 1
    # RESULT <n>: n is the length of what follows the newline
    head, body = text.split("\n", 1)
    assert int(head.split()[1]) == len(body)


def test_a_conversation_through_bytes() -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="\n", write_through=True)
    send_ready(out)
    send_result(out, True)
    send_ready(out)
    send_result(out, False)
    send_ready(out)
    assert raw.getvalue() == b"READY\nRESULT 2\nOKREADY\nRESULT 4\nFAILREADY\n"


# --- properties ---


def drain(s: io.StringIO) -> list[Event | ProtocolError]:
    """Read events until the end; every call must end in an Event, None or a ProtocolError."""
    results: list[Event | ProtocolError] = []
    for _ in range(10_000):
        try:
            event = read_event(s)
        except ProtocolError as exc:
            results.append(exc)
            continue
        if event is None:
            return results
        assert isinstance(event, Event)
        results.append(event)
    raise AssertionError("read_event made no progress")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_read_event_on_random_bytes_only_returns_events_or_raises_protocol_error(data: bytes) -> None:
    # the daemon reads stdin as UTF-8 with surrogateescape, so every byte string is some text
    s = RecordingStream(data.decode("utf-8", errors="surrogateescape"))
    drain(s)
    assert all(n <= MAX_PAYLOAD for n in s.requested)


_len_values = st.one_of(st.integers(-10, 10**12).map(str), st.text(max_size=5))
_chunks = st.one_of(
    st.just(TICK),
    st.just(TICK_HEADER),
    st.just(TICK_PAYLOAD),
    st.just("\n"),
    st.builds(lambda n: f"ver:3.0 eventname:TICK_5 len:{n}\n", _len_values),
    st.text(max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_chunks, max_size=8))
def test_read_event_on_near_miss_streams_only_returns_events_or_raises_protocol_error(
        chunks: list[str]) -> None:
    s = RecordingStream("".join(chunks))
    drain(s)
    assert all(n <= MAX_PAYLOAD for n in s.requested)


_visible = st.characters(min_codepoint=33, max_codepoint=0x2FF).filter(lambda c: not c.isspace())
_token = st.text(alphabet=_visible.filter(lambda c: c != ":"), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(headers=st.dictionaries(_token.filter(lambda k: k != "len"), st.text(alphabet=_visible, max_size=8),
                               max_size=6),
       payloads=st.lists(st.text(max_size=50), min_size=1, max_size=4))
def test_well_formed_events_round_trip(headers: dict[str, str], payloads: list[str]) -> None:
    text = ""
    expected = []
    for payload in payloads:
        all_headers = {**headers, "len": str(len(payload))}
        text += " ".join(f"{k}:{v}" for k, v in all_headers.items()) + "\n" + payload
        expected.append(Event(all_headers, payload))
    assert drain(io.StringIO(text)) == expected
