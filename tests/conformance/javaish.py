"""Java behaviours the YAML runner must reproduce: toString, regex flavour, equality, lengths."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

__all__ = [
    "describe_mismatch",
    "java_class",
    "java_regex",
    "java_str",
    "java_string_length",
    "json_dump",
]

# Java's Pattern.COMMENTS ignores these whitespace characters and '#' comments up to a line end.
_JAVA_WHITESPACE = " \t\n\x0b\f\r"
_JAVA_LINE_TERMINATORS = "\n\r\u0085\u2028\u2029"


def java_str(value: Any) -> str:
    """``String.valueOf(value)`` for the objects a parsed JSON/YAML document holds."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _java_double(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "{" + ", ".join(f"{java_str(k)}={java_str(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(java_str(v) for v in value) + "]"
    return str(value)


def _java_double(value: float) -> str:
    """``Double.toString``: plain notation in [1e-3, 1e7), otherwise ``d.dddE±n``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        return repr(value)  # Python is positional in this range and keeps a '.'
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(str(d) for d in digits).rstrip("0") or "0"
    assert isinstance(exponent, int)
    power = exponent + len(digits) - 1
    mantissa = text[0] + "." + (text[1:] or "0")
    return ("-" if sign else "") + f"{mantissa}E{power}"


def java_class(value: Any) -> str:
    """The Java class name a value would have in the Java runner (for messages only)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Double"
    if isinstance(value, str):
        return "String"
    if isinstance(value, dict):
        return "Map"
    if isinstance(value, list | tuple):
        return "List"
    return type(value).__name__


def java_string_length(value: str) -> int:
    """``String.length()``: UTF-16 code units, not code points."""
    return len(value.encode("utf-16-le")) // 2


def java_regex(pattern: str, *, comments: bool = False) -> re.Pattern[str]:
    """Compile a ``java.util.regex`` pattern with Python's ``re``, keeping Java's meaning.

    ``comments`` is Java's ``Pattern.COMMENTS`` (the ``x`` flag): unescaped whitespace and ``#``
    comments are dropped everywhere, character classes included (Python's ``re.VERBOSE`` keeps
    them inside classes, so the pattern is normalised here instead). ``\\Q...\\E`` quoting,
    ``(?<name>...)``, ``\\z`` and ``\\Z`` are translated; ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are
    ASCII-only as in Java. Raises ``re.error`` for what Python cannot express.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "Q":
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2 :] if end < 0 else pattern[i + 2 : end]
                out.append(re.escape(literal))
                i = n if end < 0 else end + 2
            elif nxt == "z":
                out.append(r"\Z")
                i += 2
            elif nxt == "Z":
                out.append(r"(?=\n?\Z)")
                i += 2
            else:
                out.append(pattern[i : i + 2])
                i += 2
            continue
        if comments and c in _JAVA_WHITESPACE:
            i += 1
            continue
        if comments and c == "#":
            while i < n and pattern[i] not in _JAVA_LINE_TERMINATORS:
                i += 1
            continue
        if pattern.startswith("(?<", i) and i + 3 < n and pattern[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return re.compile("".join(out), re.ASCII)


def json_dump(value: Any, limit: int = 2000) -> str:
    """Compact JSON for failure messages (falls back to ``repr``), cut at ``limit`` characters."""
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...(cut)"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe_mismatch(actual: Any, expected: Any, path: str) -> str | None:
    """``None`` when ``actual`` matches ``expected`` as the Java ``match`` does, else why not.

    Maps must have exactly the same keys, lists the same length and order; booleans never equal
    numbers; numbers of different types compare by value (Java's ``doubleValue`` rule).
    """
    where = f"[{path}]" if path else "[$body]"
    if expected is None:
        if actual is None:
            return None
        return f"{where} should be null but was {json_dump(actual)}"
    if actual is None:
        return f"{where} is null (or missing), expected {json_dump(expected)}"
    if isinstance(expected, bool) or isinstance(actual, bool):
        if isinstance(expected, bool) and isinstance(actual, bool) and expected == actual:
            return None
        return f"{where} expected {json_dump(expected)} but was {json_dump(actual)}"
    if _is_number(expected) and _is_number(actual):
        if actual == expected:
            return None
        return f"{where} expected {json_dump(expected)} but was {json_dump(actual)}"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{where} expected a map {json_dump(expected)} but was {json_dump(actual)}"
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing or extra:
            return (
                f"{where} keys differ: missing {missing}, unexpected {extra}; "
                f"expected {json_dump(expected)} but was {json_dump(actual)}"
            )
        for key, sub in expected.items():
            problem = describe_mismatch(actual[key], sub, _join(path, key))
            if problem is not None:
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{where} expected a list {json_dump(expected)} but was {json_dump(actual)}"
        if len(actual) != len(expected):
            return (
                f"{where} expected a list of {len(expected)} but it has {len(actual)}: "
                f"expected {json_dump(expected)} but was {json_dump(actual)}"
            )
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            problem = describe_mismatch(a, e, _join(path, str(index)))
            if problem is not None:
                return problem
        return None
    if type(actual) is not type(expected) or actual != expected:
        return f"{where} expected {json_dump(expected)} but was {json_dump(actual)}"
    return None


def _join(path: str, key: str) -> str:
    escaped = key.replace(".", "\\.")
    return f"{path}.{escaped}" if path else escaped
