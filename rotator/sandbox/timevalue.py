"""Elasticsearch time values (``30d``, ``1h``, ``-1``): parsing, errors and conversions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rotator.sandbox.errors import EsError

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_NANOS = {
    "nanos": 1,
    "micros": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
    "d": 86_400 * 1_000_000_000,
}
# Suffixes in the order Elasticsearch tries them; only ``m`` is matched case-sensitively.
_SUFFIXES = ("nanos", "micros", "ms", "s", "m", "h", "d")
_JAVA_LONG = re.compile(r"[+-]?[0-9]+")
_JAVA_DOUBLE = re.compile(
    r"[+-]?(NaN|Infinity|((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)|"
    r"(0[xX]([0-9a-fA-F]+\.?|[0-9a-fA-F]*\.[0-9a-fA-F]+)[pP][+-]?\d+))[fFdD]?"
)
_MINUS_ONE = re.compile(r"-0*1")
_ZERO = re.compile(r"0+")


@dataclass(frozen=True)
class TimeValue:
    """A parsed duration: ``duration`` in ``unit`` (one of the suffixes above)."""

    duration: int
    unit: str

    @property
    def nanos(self) -> int:
        """The duration in nanoseconds, saturating like Java's ``TimeUnit``."""
        return _saturate(self.duration * _NANOS[self.unit])

    @property
    def millis(self) -> int:
        """The duration in whole milliseconds (truncated toward zero)."""
        return _convert(self.duration, self.unit, 1_000_000)

    @property
    def seconds(self) -> int:
        """The duration in whole seconds (truncated toward zero), as ``getSeconds()``."""
        return _convert(self.duration, self.unit, 1_000_000_000)


def parse_time_value(text: str, setting: str) -> TimeValue:
    """Parse ``text`` as ``TimeValue.parseTimeValue(text, null, setting)`` does.

    Raises:
        EsError: 400 ``illegal_argument_exception`` with Elasticsearch's exact text for a
            fractional value, a missing or unknown unit, or a negative value other than -1.
    """
    normalized = text.lower().strip()
    for suffix in _SUFFIXES:
        matches = text.endswith(suffix) if suffix == "m" else normalized.endswith(suffix)
        if matches:
            return TimeValue(_parse_number(text, normalized, suffix, setting), suffix)
    if _MINUS_ONE.fullmatch(normalized):
        return TimeValue(-1, "ms")
    if _ZERO.fullmatch(normalized):
        return TimeValue(0, "ms")
    raise _invalid(
        f"failed to parse setting [{setting}] with value [{text}] as a time value: "
        "unit is missing or unrecognized"
    )


def parse_millis(text: str, setting: str) -> int:
    """Parse ``text`` as a time value and return whole milliseconds.

    Raises:
        EsError: as :func:`parse_time_value`.
    """
    return parse_time_value(text, setting).millis


def _parse_number(text: str, normalized: str, suffix: str, setting: str) -> int:
    number = normalized[: len(normalized) - len(suffix)].strip()
    if _JAVA_LONG.fullmatch(number) and _LONG_MIN <= int(number) <= _LONG_MAX:
        value = int(number)
        if value < -1:
            raise _invalid(
                f"failed to parse setting [{setting}] with value [{text}] as a time value: "
                "negative durations are not supported"
            )
        return value
    cause = {"type": "number_format_exception", "reason": f'For input string: "{number}"'}
    if _JAVA_DOUBLE.fullmatch(number):
        raise _invalid(f"failed to parse [{text}], fractional time values are not supported", cause)
    raise _invalid(f"failed to parse [{text}]", cause)


def _invalid(reason: str, caused_by: dict[str, str] | None = None) -> EsError:
    return EsError(400, "illegal_argument_exception", reason, caused_by=caused_by)


def _convert(duration: int, unit: str, target_nanos: int) -> int:
    source = _NANOS[unit]
    if source >= target_nanos:
        return _saturate(duration * (source // target_nanos))
    quotient = abs(duration) // (target_nanos // source)
    return quotient if duration >= 0 else -quotient


def _saturate(value: int) -> int:
    return max(_LONG_MIN, min(_LONG_MAX, value))
