"""Duration strings: the accepted forms, the refused ones and formatting."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", timedelta(seconds=45)),
        ("90m", timedelta(minutes=90)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("0s", timedelta(0)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_accepted_forms(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "value",
    ["", "5", "m", "1.5h", "-5m", "5 m", "5M", "1w", "30days", "1h30m", "P1D", 30, 1.5, None, True],
)
def test_refused_forms_name_the_accepted_ones(value: object) -> None:
    with pytest.raises(DurationError, match="such as 45s, 90m, 12h or 30d"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=30), "30d"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=61), "61s"),
        (timedelta(hours=36), "36h"),
        (timedelta(0), "0s"),
    ],
)
def test_format_uses_the_largest_exact_unit(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.integers(min_value=0, max_value=10**9))
def test_format_then_parse_round_trips(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_absurdly_long_duration_is_refused_not_crashing() -> None:
    with pytest.raises(DurationError, match="too long"):
        parse_duration("999999999999d")
