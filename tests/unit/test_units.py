"""listener.core.text: sizes as memmon writes them (and more), durations, human-readable sizes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from listener.core.text import (
    format_age,
    format_memory,
    format_pid,
    format_size,
    parse_duration,
    parse_size,
)

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4

# --- sizes ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # memmon's forms: a plain number of bytes, KB/MB/GB as powers of 1024
        ("10000", 10000),
        ("250", 250),
        ("1KB", KiB),
        ("1MB", MiB),
        ("1GB", GiB),
        ("200MB", 200 * MiB),
        ("10kB", 10 * KiB),  # memmon's own test writes kB
        # decimals
        ("1.5GB", int(1.5 * GiB)),
        ("0.5MB", 512 * KiB),
        (".5k", 512),
        ("1.", 1),
        # one-letter units and bytes
        ("512k", 512 * KiB),
        ("400M", 400 * MiB),
        ("2G", 2 * GiB),
        ("1T", TiB),
        ("1TB", TiB),
        ("100B", 100),
        # IEC spellings
        ("1KiB", KiB),
        ("512MiB", 512 * MiB),
        ("1.5GiB", int(1.5 * GiB)),
        ("2TiB", 2 * TiB),
        # case does not matter, blanks around the number and unit do not either
        ("1gb", GiB),
        ("1Gb", GiB),
        ("1gib", GiB),
        ("1GIB", GiB),
        ("400mb", 400 * MiB),
        (" 400 MB ", 400 * MiB),
        ("0", 0),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "MB", "-1", "-1MB", "1XB", "1 PB", "1KiBs", "1e3", "0x10", "1,5GB", "1.5.GB", "ten",
     "1 2MB", "nan", "inf"],
)
def test_parse_size_refuses_with_a_message_naming_the_input(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_size(text)
    assert repr(text) in str(excinfo.value)


def test_parse_size_refuses_absurdly_large_sizes() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_size("9" * 400)  # would be float('inf') on the way
    with pytest.raises(ValueError, match="too large"):
        parse_size("2000000TiB")


def test_parse_size_keeps_every_digit_of_a_plain_byte_count() -> None:
    assert parse_size("9007199254740993") == 9007199254740993


_UNITS = {"": 1, "B": 1, "K": KiB, "KB": KiB, "KiB": KiB, "M": MiB, "MB": MiB, "MiB": MiB,
          "G": GiB, "GB": GiB, "GiB": GiB, "T": TiB, "TB": TiB, "TiB": TiB}


@settings(max_examples=200, deadline=None)
@given(number=st.integers(min_value=0, max_value=10**6), unit=st.sampled_from(sorted(_UNITS)),
       lower=st.booleans())
def test_parse_size_of_a_whole_number_and_a_unit_is_exact(number: int, unit: str, lower: bool) -> None:
    text = f"{number}{unit.lower() if lower else unit}"
    assert parse_size(text) == number * _UNITS[unit]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=1000 * TiB))
def test_format_size_round_trips_through_parse_size(n: int) -> None:
    # format_size keeps one decimal, so the round trip is exact to within half a tenth of the unit
    text = format_size(n)
    unit = 1
    for factor in (KiB, MiB, GiB, TiB):
        if n >= factor:
            unit = factor
    assert abs(parse_size(text) - n) <= 0.05 * unit + 1


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_parse_size_only_ever_raises_value_error(text: str) -> None:
    try:
        value = parse_size(text)
    except ValueError:
        return
    assert isinstance(value, int)
    assert value >= 0


# --- durations ---


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("0", 0),
        ("30s", 30),
        ("10m", 600),
        ("1m", 60),  # memmon's -u 1m
        ("1.5h", 5400),
        ("2d", 172800),
        ("1d", 86400),
        ("0.5m", 30),
        ("2H", 7200),
        (" 45 s ", 45),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "-5", "-5s", "5x", "5 min", "1w", "1h30m", "soon"])
def test_parse_duration_refuses_with_a_message_naming_the_input(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_duration(text)
    assert repr(text) in str(excinfo.value)


def test_parse_duration_refuses_absurdly_long_durations() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("1000000d")
    with pytest.raises(ValueError, match="too long"):
        parse_duration("9" * 400)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_parse_duration_only_ever_raises_value_error(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert value >= 0


# --- format_size ---


@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1023, "1023B"),
        (1024, "1.0KiB"),
        (1536, "1.5KiB"),
        (400 * MiB, "400.0MiB"),
        (419430400, "400.0MiB"),
        (int(1.5 * GiB), "1.5GiB"),
        (3 * TiB, "3.0TiB"),
        (2048 * TiB, "2048.0TiB"),  # TiB is the largest unit
        (-5, "-5B"),
    ],
)
def test_format_size(n_bytes: int, text: str) -> None:
    assert format_size(n_bytes) == text


# --- ages, pids and memory figures: the one way the page and `check` write them ---


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "never"),
        (0, "0s ago"),
        (5.9, "5s ago"),  # rounded down: "5s ago" means at least 5 s
        (90, "90s ago"),  # under 2 minutes, seconds say more than "1m"
        (120, "2m ago"),
        (7199, "119m ago"),
        (7200, "2h ago"),
        (3 * 86400, "3d ago"),
        (-3, "0s ago"),  # another host's clock ahead of ours
    ],
)
def test_format_age(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text


def test_an_age_reads_back_as_a_duration() -> None:
    # ages are written in the units --grace and --restart-window take
    for seconds in (5, 90, 600, 7200, 3 * 86400):
        assert parse_duration(format_age(seconds).removesuffix(" ago")) == seconds


@pytest.mark.parametrize(("pid", "text"), [(4242, "4242"), (0, "-"), (None, "-")])
def test_format_pid(pid: int | None, text: str) -> None:
    assert format_pid(pid) == text


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ((210 * MiB, "pss"), "210.0MiB pss"),
        ((210 * MiB, "pss", 4312), "210.0MiB pss (pid 4312)"),
        ((None, "rss", 4312), "-"),
        ((210 * MiB, "pss", 4312, ["largest of 5"]), "210.0MiB pss (pid 4312, largest of 5)"),
        ((600 * MiB, "rss", None, ["sum of 5", "not pss: denied"]),
         "600.0MiB rss (sum of 5, not pss: denied)"),
        ((210 * MiB, "pss", 4312, ["largest of 5"], 35.2),
         "210.0MiB pss (pid 4312, read 35s ago, largest of 5)"),
        ((210 * MiB, "pss", None, [], 35.2), "210.0MiB pss (read 35s ago)"),
        ((210 * MiB, "pss", None, [], 0.0), "210.0MiB pss"),  # read this tick
    ],
)
def test_format_memory(args: tuple, text: str) -> None:
    assert format_memory(*args) == text
