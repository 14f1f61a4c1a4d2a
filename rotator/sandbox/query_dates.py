"""Date parsing, date math and date formatting as Elasticsearch's date fields do them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from datetime import timezone as dt_timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rotator.sandbox.query_errors import QueryError, illegal_argument, parse_exception

__all__ = [
    "FIELD_FORMAT",
    "DateFormatError",
    "format_date",
    "parse_date",
    "parse_zone",
]

#: The mapping format of every date field of API key documents (``creation_time``...).
FIELD_FORMAT = "epoch_millis"

_DAY_MS = 86_400_000
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_ISO_PRINT = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
_NAMED: dict[str, str] = {
    "date_time": _ISO_PRINT,
    "strict_date_time": _ISO_PRINT,
    "date_time_no_millis": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "strict_date_time_no_millis": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "basic_date": "yyyyMMdd",
    "strict_basic_date": "yyyyMMdd",
    "basic_date_time": "yyyyMMdd'T'HHmmss.SSSXX",
    "strict_basic_date_time": "yyyyMMdd'T'HHmmss.SSSXX",
    "basic_date_time_no_millis": "yyyyMMdd'T'HHmmssXX",
    "strict_basic_date_time_no_millis": "yyyyMMdd'T'HHmmssXX",
    "date": "yyyy-MM-dd",
    "strict_date": "yyyy-MM-dd",
    "year_month_day": "yyyy-MM-dd",
    "strict_year_month_day": "yyyy-MM-dd",
    "date_hour": "yyyy-MM-dd'T'HH",
    "strict_date_hour": "yyyy-MM-dd'T'HH",
    "date_hour_minute": "yyyy-MM-dd'T'HH:mm",
    "strict_date_hour_minute": "yyyy-MM-dd'T'HH:mm",
    "date_hour_minute_second": "yyyy-MM-dd'T'HH:mm:ss",
    "strict_date_hour_minute_second": "yyyy-MM-dd'T'HH:mm:ss",
    "date_hour_minute_second_millis": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "strict_date_hour_minute_second_millis": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "date_hour_minute_second_fraction": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "strict_date_hour_minute_second_fraction": "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "hour_minute_second": "HH:mm:ss",
    "strict_hour_minute_second": "HH:mm:ss",
    "hour_minute": "HH:mm",
    "strict_hour_minute": "HH:mm",
    "hour": "HH",
    "strict_hour": "HH",
    "year": "yyyy",
    "strict_year": "yyyy",
    "year_month": "yyyy-MM",
    "strict_year_month": "yyyy-MM",
}
_ISO_OPTIONAL = frozenset(
    {
        "strict_date_optional_time",
        "date_optional_time",
        "iso8601",
        "strict_date_optional_time_nanos",
    }
)
_ISO_RE = re.compile(
    r"(?P<y>[+-]?\d{4,9})(?:-(?P<M>\d{1,2})(?:-(?P<d>\d{1,2})"
    r"(?:T(?P<H>\d{1,2})(?::(?P<m>\d{1,2})(?::(?P<s>\d{1,2})(?:[.,](?P<f>\d{1,9}))?)?)?)?"
    r"(?P<z>Z|[+-]\d{2}(?::?\d{2})?)?)?)?"
)
_EPOCH_RE = re.compile(r"[+-]?\d+(?:\.\d+)?")


class DateFormatError(ValueError):
    """A date text does not match a format (Elasticsearch then reports a ``parse_exception``)."""


@dataclass(frozen=True, slots=True)
class _Civil:
    year: int
    month: int
    day: int
    hour: int = 0
    minute: int = 0
    second: int = 0
    milli: int = 0


def _days_from_civil(y: int, m: int, d: int) -> int:
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def _to_civil(ms: int) -> _Civil:
    days, rest = divmod(ms, _DAY_MS)
    y, mo, d = _civil_from_days(days)
    hour, rest = divmod(rest, 3_600_000)
    minute, rest = divmod(rest, 60_000)
    second, milli = divmod(rest, 1000)
    return _Civil(y, mo, d, hour, minute, second, milli)


def _from_civil(c: _Civil) -> int:
    days = _days_from_civil(c.year, c.month, c.day)
    return days * _DAY_MS + c.hour * 3_600_000 + c.minute * 60_000 + c.second * 1000 + c.milli


def _days_in_month(y: int, m: int) -> int:
    nxt = _days_from_civil(y + (m == 12), 1 if m == 12 else m + 1, 1)
    return nxt - _days_from_civil(y, m, 1)


def _offset_ms(zone: tzinfo | None, utc_ms: int) -> int:
    if zone is None or zone is UTC:
        return 0
    try:
        moment = datetime.fromtimestamp(utc_ms / 1000, zone)
    except (OverflowError, OSError, ValueError):
        return 0
    offset = moment.utcoffset()
    return 0 if offset is None else int(offset.total_seconds() * 1000)


def _local_to_utc(local_ms: int, zone: tzinfo | None) -> int:
    guess = local_ms - _offset_ms(zone, local_ms)
    return local_ms - _offset_ms(zone, guess)


def parse_zone(name: str) -> tzinfo:
    """Resolve a ``time_zone`` parameter (``UTC``, ``+01:00``, ``Europe/Paris``...).

    Raises:
        QueryError: ``illegal_argument_exception`` for an unknown zone.
    """
    if name in ("Z", "UTC", "GMT", "+00:00", "-00:00"):
        return UTC
    match = re.fullmatch(r"([+-])(\d{1,2})(?::?(\d{2}))?", name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0))
        return dt_timezone(sign * delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise illegal_argument(f"Unknown time-zone ID: {name}") from exc


def _failure(text: str, fmt: str) -> QueryError:
    inner = f"failed to parse date field [{text}] with format [{fmt}]"
    return parse_exception(f"{inner}: [{inner}]")


def parse_date(
    text: str, *, now_ms: int, round_up: bool, fmt: str | None = None, zone: tzinfo | None = None
) -> int:
    """Parse a date or date-math expression to epoch milliseconds.

    Args:
        text: ``now-1d/d``, ``2024-01-01||+1M``, ``1700000000000``...
        now_ms: The value of ``now``.
        round_up: Round ``/unit`` up to the unit's last millisecond and fill missing date
            components with their maximum (``gt`` and ``lte`` bounds do this).
        fmt: The date format (``a||b`` tries each); the field's ``epoch_millis`` when ``None``.
        zone: The zone for dates without an offset and for rounding.

    Raises:
        QueryError: ``parse_exception`` with Elasticsearch's text when the date does not parse.
    """
    fmt = fmt or FIELD_FORMAT
    if text.startswith("now"):
        base, math = now_ms, text[3:]
    else:
        date_part, sep, math = text.partition("||")
        if not sep:
            math = ""
        base = _parse_formatted(date_part, fmt, round_up, zone)
    return _apply_math(base, math, round_up, zone) if math else base


def _parse_formatted(text: str, fmt: str, round_up: bool, zone: tzinfo | None) -> int:
    for one in fmt.split("||"):
        try:
            return _parse_one(text, one.strip(), round_up, zone)
        except DateFormatError:
            continue
    raise _failure(text, fmt)


def _parse_one(text: str, fmt: str, round_up: bool, zone: tzinfo | None) -> int:
    if fmt in ("epoch_millis", "epoch_second"):
        if not _EPOCH_RE.fullmatch(text):
            raise DateFormatError(text)
        scale = 1 if fmt == "epoch_millis" else 1000
        whole, _, frac = text.partition(".")
        value = int(whole) * scale
        if frac:
            part = int((frac + "000000000")[:9]) * scale // 1_000_000_000
            value += -part if whole.startswith("-") else part
        return value
    if fmt in _ISO_OPTIONAL:
        return _parse_iso(text, round_up, zone)
    return _parse_pattern(text, _NAMED.get(fmt, fmt), round_up, zone)


def _part(parts: dict[str, str | None], key: str, low: int, high: int, round_up: bool) -> int:
    text = parts.get(key)
    if text:
        return int(text)
    return high if round_up else low


def _fill(parts: dict[str, str | None], round_up: bool) -> _Civil:
    year = int(parts.get("y") or 1970)
    month = _part(parts, "M", 1, 12, round_up)
    day = _part(parts, "d", 1, _days_in_month(year, month) if 1 <= month <= 12 else 1, round_up)
    hour = _part(parts, "H", 0, 23, round_up)
    minute = _part(parts, "m", 0, 59, round_up)
    second = _part(parts, "s", 0, 59, round_up)
    frac = parts.get("f")
    milli = int((frac + "00")[:3]) if frac else (999 if round_up else 0)
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        raise DateFormatError("out of range")
    if hour > 23 or minute > 59 or second > 59:
        raise DateFormatError("out of range")
    return _Civil(year, month, day, hour, minute, second, milli)


def _zone_of(offset: str | None, zone: tzinfo | None) -> tzinfo | None:
    if not offset:
        return zone
    if offset == "Z":
        return UTC
    return parse_zone(
        offset if ":" in offset or len(offset) == 3 else offset[:3] + ":" + offset[3:]
    )


def _parse_iso(text: str, round_up: bool, zone: tzinfo | None) -> int:
    match = _ISO_RE.fullmatch(text)
    if not match:
        raise DateFormatError(text)
    parts = match.groupdict()
    local = _from_civil(_fill(parts, round_up))
    return _local_to_utc(local, _zone_of(parts.get("z"), zone))


_TOKEN_RE = re.compile(r"'[^']*'|([A-Za-z])\1*|.", re.DOTALL)


def _tokens(pattern: str) -> list[str]:
    return [m.group(0) for m in _TOKEN_RE.finditer(pattern)]


_PARSE_PIECES: dict[str, str] = {
    "y": r"(?P<y>[+-]?\d{4,9})",
    "u": r"(?P<y>[+-]?\d{4,9})",
    "M": r"(?P<M>\d{1,2})",
    "d": r"(?P<d>\d{1,2})",
    "H": r"(?P<H>\d{1,2})",
    "m": r"(?P<m>\d{1,2})",
    "s": r"(?P<s>\d{1,2})",
    "S": r"(?P<f>\d{1,9})",
    "X": r"(?P<z>Z|[+-]\d{2}(?::?\d{2})?)",
    "x": r"(?P<z>[+-]\d{2}(?::?\d{2})?)",
    "Z": r"(?P<z>Z|[+-]\d{2}(?::?\d{2})?)",
}


@lru_cache(maxsize=64)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    seen: set[str] = set()
    for token in _tokens(pattern):
        letter = token[0]
        if token.startswith("'"):
            out.append(re.escape(token[1:-1] or "'"))
        elif letter == "M" and len(token) >= 3:
            out.append(r"(?P<Mt>[A-Za-z]+)")
            seen.add("M")
        elif letter in _PARSE_PIECES and letter.isalpha():
            group = _PARSE_PIECES[letter]
            key = group[4]
            if key in seen:
                raise DateFormatError(pattern)
            seen.add(key)
            out.append(group)
        elif letter.isalpha():
            raise DateFormatError(pattern)
        else:
            out.append(re.escape(token))
    return re.compile("".join(out))


def _parse_pattern(text: str, pattern: str, round_up: bool, zone: tzinfo | None) -> int:
    match = _pattern_regex(pattern).fullmatch(text)
    if not match:
        raise DateFormatError(text)
    parts: dict[str, str | None] = dict(match.groupdict())
    month_text = parts.pop("Mt", None)
    if month_text:
        names = [m.lower() for m in _MONTHS]
        low = month_text.lower()
        hits = [i for i, name in enumerate(names) if name == low or name[:3] == low]
        if not hits:
            raise DateFormatError(text)
        parts["M"] = str(hits[0] + 1)
    local = _from_civil(_fill(parts, round_up))
    return _local_to_utc(local, _zone_of(parts.get("z"), zone))


_UNITS = frozenset("yMwdhHms")


def _apply_math(ms: int, math: str, round_up: bool, zone: tzinfo | None) -> int:
    i = 0
    while i < len(math):
        op = math[i]
        i += 1
        if op == "/":
            if i >= len(math):
                raise parse_exception(f"truncated date math [{math}]")
            unit = math[i]
            i += 1
            if unit not in _UNITS:
                raise parse_exception(f"unit [{unit}] not supported for date math [{math}]")
            ms = _round(ms, unit, round_up, zone)
            continue
        if op not in "+-":
            raise parse_exception(f"operator not supported for date math [{math}]")
        start = i
        while i < len(math) and math[i].isdigit():
            i += 1
        amount = int(math[start:i]) if i > start else 1
        if i >= len(math):
            raise parse_exception(f"truncated date math [{math}]")
        unit = math[i]
        i += 1
        if unit not in _UNITS:
            raise parse_exception(f"unit [{unit}] not supported for date math [{math}]")
        ms = _add(ms, -amount if op == "-" else amount, unit, zone)
    return ms


def _add(ms: int, amount: int, unit: str, zone: tzinfo | None) -> int:
    if unit in "hH":
        return ms + amount * 3_600_000
    if unit == "m":
        return ms + amount * 60_000
    if unit == "s":
        return ms + amount * 1000
    local = ms + _offset_ms(zone, ms)
    if unit in "dw":
        local += amount * _DAY_MS * (7 if unit == "w" else 1)
    else:
        c = _to_civil(local)
        months = c.year * 12 + (c.month - 1) + amount * (12 if unit == "y" else 1)
        year, month = divmod(months, 12)
        day = min(c.day, _days_in_month(year, month + 1))
        local = _from_civil(_Civil(year, month + 1, day, c.hour, c.minute, c.second, c.milli))
    return _local_to_utc(local, zone)


def _round(ms: int, unit: str, round_up: bool, zone: tzinfo | None) -> int:
    local = ms + _offset_ms(zone, ms)
    c = _to_civil(local)
    if unit == "y":
        start = _Civil(c.year, 1, 1)
        nxt = _Civil(c.year + 1, 1, 1)
    elif unit == "M":
        start = _Civil(c.year, c.month, 1)
        y2, m2 = (c.year + 1, 1) if c.month == 12 else (c.year, c.month + 1)
        nxt = _Civil(y2, m2, 1)
    else:
        span = {"w": 7 * _DAY_MS, "d": _DAY_MS, "h": 3_600_000, "H": 3_600_000}.get(unit)
        span = span or (60_000 if unit == "m" else 1000)
        if unit == "w":
            days = local // _DAY_MS
            monday = days - (days + 3) % 7
            lo = monday * _DAY_MS
        else:
            lo = local - local % span
        hi = lo + span
        return _local_to_utc(hi, zone) - 1 if round_up else _local_to_utc(lo, zone)
    if round_up:
        return _local_to_utc(_from_civil(nxt), zone) - 1
    return _local_to_utc(_from_civil(start), zone)


def _year_text(year: int, width: int) -> str:
    if year > 9999:
        return f"+{year}"
    if year < 0:
        return f"-{-year:0{width}d}"
    return f"{year:0{width}d}"


def _offset_text(offset_ms: int, letters: str) -> str:
    if offset_ms == 0 and letters[0] in "XZ" and (letters[0] == "X" or len(letters) >= 2):
        return "Z"
    sign = "-" if offset_ms < 0 else "+"
    minutes = abs(offset_ms) // 60_000
    hh, mm = divmod(minutes, 60)
    if letters in ("X", "x"):
        return f"{sign}{hh:02d}" + (f"{mm:02d}" if mm else "")
    if letters in ("XX", "xx", "Z", "ZZ", "ZZZ"):
        return f"{sign}{hh:02d}{mm:02d}"
    return f"{sign}{hh:02d}:{mm:02d}"


def format_date(ms: int, fmt: str | None = None, zone: tzinfo | None = None) -> str:
    """Format epoch milliseconds the way a ``DocValueFormat.DateTime`` of ``fmt`` prints them.

    Args:
        ms: Epoch milliseconds.
        fmt: The format (the first of ``a||b`` prints); the field's ``epoch_millis`` when ``None``.
        zone: The zone to print in (UTC when ``None``).
    """
    first = (fmt or FIELD_FORMAT).split("||")[0].strip()
    if first == "epoch_millis":
        return str(ms)
    if first == "epoch_second":
        seconds, milli = divmod(ms, 1000)
        return str(seconds) if milli == 0 else f"{seconds}.{milli:03d}".rstrip("0")
    pattern = _ISO_PRINT if first in _ISO_OPTIONAL else _NAMED.get(first, first)
    offset = _offset_ms(zone, ms)
    c = _to_civil(ms + offset)
    return "".join(_print_token(t, c, offset) for t in _tokens(pattern))


def _print_token(token: str, c: _Civil, offset: int) -> str:
    letter = token[0]
    n = len(token)
    if token.startswith("'"):
        return token[1:-1] or "'"
    if letter in "yu":
        return (
            _year_text(c.year, 2 if n == 2 else max(n, 4))[-2:]
            if n == 2
            else _year_text(c.year, max(n, 4))
        )
    if letter == "M":
        if n >= 4:
            return _MONTHS[c.month - 1]
        if n == 3:
            return _MONTHS[c.month - 1][:3]
        return f"{c.month:0{n}d}"
    numbers = {"d": c.day, "H": c.hour, "m": c.minute, "s": c.second}
    if letter in numbers:
        return f"{numbers[letter]:0{n}d}"
    if letter == "S":
        return f"{c.milli:03d}{'0' * 6}"[:n]
    if letter in "XxZ":
        return _offset_text(offset, token)
    if letter.isalpha():
        raise illegal_argument(f"Unknown pattern letter: {letter}")
    return token
