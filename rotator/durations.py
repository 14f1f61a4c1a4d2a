"""Duration strings (``45s``, ``90m``, ``12h``, ``30d``): parsing and formatting."""

from __future__ import annotations

import re
from datetime import timedelta

ACCEPTED_FORMS = "a whole number followed by s, m, h or d, such as 45s, 90m, 12h or 30d"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"(?P<amount>\d{1,12})(?P<unit>[smhd])")


class DurationError(ValueError):
    """A value that is not a duration string; the message shows the accepted forms."""


def parse_duration(text: object) -> timedelta:
    """Parse a duration string such as ``30d`` into a timedelta.

    Raises:
        DurationError: the value is not a string of the accepted form.
    """
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str):
        raise DurationError(f"expected a duration ({ACCEPTED_FORMS}), got {_describe(text)}")
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        raise DurationError(f"invalid duration {_excerpt(text)}: use {ACCEPTED_FORMS}")
    try:
        return timedelta(seconds=int(match["amount"]) * _UNITS[match["unit"]])
    except OverflowError:
        raise DurationError(f"duration {_excerpt(text)} is too long") from None


def format_duration(value: timedelta) -> str:
    """Render a timedelta in the largest unit that divides it exactly (``90m``, ``30d``)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def _describe(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "a mapping",
    }
    if value is None:
        return "nothing (null)"
    if isinstance(value, (list, dict)):
        return names[type(value)]
    return f"{names.get(type(value), type(value).__name__)} ({_excerpt(value)})"


def _excerpt(value: object, limit: int = 40) -> str:
    # Messages repeat a short excerpt of the input, never all of it.
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 2 * limit else f"{text[: 2 * limit]}..."
