"""Expiration strings: Elasticsearch's TimeValue parsing, its texts and its unit conversions."""

from __future__ import annotations

import pytest

from rotator.sandbox.errors import EsError
from rotator.sandbox.timevalue import TimeValue, parse_millis, parse_time_value

UNIT_MISSING = "failed to parse setting [expiration] with value [{}] as a time value: unit is missing or unrecognized"


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("1d", 86_400_000),
        ("30d", 30 * 86_400_000),
        ("2h", 7_200_000),
        ("15m", 900_000),
        ("45s", 45_000),
        ("500ms", 500),
        ("1500micros", 1),
        ("2000000nanos", 2),
        ("1D", 86_400_000),
        ("1H", 3_600_000),
        ("1MS", 1),
        ("  3s ", 3_000),
        ("+5s", 5_000),
        ("-1", -1),
        ("-001", -1),
        ("0", 0),
        ("000", 0),
        ("-1d", -86_400_000),
        ("0s", 0),
    ],
)
def test_values(text: str, millis: int) -> None:
    assert parse_millis(text, "expiration") == millis


def test_seconds_truncate_toward_zero() -> None:
    assert parse_time_value("1500ms", "expiration").seconds == 1
    assert parse_time_value("999ms", "expiration").seconds == 0
    assert parse_time_value("-1", "expiration").seconds == 0
    assert parse_time_value("-1d", "expiration").seconds == -86_400


def test_huge_values_saturate() -> None:
    value = parse_time_value("9223372036854775807d", "expiration")
    assert value.seconds == 2**63 - 1
    assert value.nanos == 2**63 - 1


def test_unit_is_kept() -> None:
    assert parse_time_value("7d", "x") == TimeValue(7, "d")


def error_for(text: str) -> EsError:
    with pytest.raises(EsError) as exc:
        parse_time_value(text, "expiration")
    assert exc.value.status == 400
    assert exc.value.error_type == "illegal_argument_exception"
    return exc.value


@pytest.mark.parametrize("text", ["30x", "1M", "1w", "1y", "abc", "", "-2"])
def test_missing_or_unknown_unit(text: str) -> None:
    assert error_for(text).reason == UNIT_MISSING.format(text)


@pytest.mark.parametrize("text", ["1.5h", "0.5d", "1e3s", "99999999999999999999d"])
def test_fractional(text: str) -> None:
    error = error_for(text)
    assert error.reason == f"failed to parse [{text}], fractional time values are not supported"
    assert error.caused_by is not None
    assert error.caused_by["type"] == "number_format_exception"


@pytest.mark.parametrize("text", ["xs", "1_0s", "s", "0x10s"])
def test_not_a_number(text: str) -> None:
    assert error_for(text).reason == f"failed to parse [{text}]"


@pytest.mark.parametrize("text", ["-2s", "-10d", "-5ms"])
def test_negative(text: str) -> None:
    assert error_for(text).reason == (
        f"failed to parse setting [expiration] with value [{text}] as a time value: negative "
        "durations are not supported"
    )
