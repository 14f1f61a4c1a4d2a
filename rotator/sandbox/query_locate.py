"""Positions for query-API parse errors, found in the request text.

The engine parses an already decoded body, so its errors name the token they are about
(``QueryError.where``: a parsed object and one of its keys) rather than a position. Here the
request text is scanned alongside that body to find the token's line and column, 1-based as
Jackson reports them: a field name at its opening quote, a value at its first character.
Elasticsearch then shows them as an ``[line:col] `` prefix of an ``x_content_parse_exception``
reason (``XContentParseException.getMessage``) or as ``line``/``col`` fields of a
``parsing_exception`` (``ParsingException.metadataToXContent``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from rotator.sandbox.query_errors import QueryError, Where

__all__ = ["locate", "position"]

_SPACE = re.compile(r"\s*")
_SCALAR = re.compile(r"[^\s,\]}]+")
Found = tuple[int, int] | None


class _Scan:
    """A walk over the JSON text in step with the parsed value it produced."""

    def __init__(self, text: str, where: Where) -> None:
        self.text = text
        self.target, self.key, self.part = where

    def skip(self, i: int) -> int:
        match = _SPACE.match(self.text, i)
        return match.end() if match else i

    def value(self, i: int, parsed: Any) -> tuple[int, int | None]:
        """Walk the value starting at ``i``; return its end and the found offset, if any."""
        i = self.skip(i)
        if i >= len(self.text):
            return i, None
        char = self.text[i]
        if char == "{":
            return self.obj(i + 1, parsed)
        if char == "[":
            return self.array(i + 1, parsed)
        if char == '"':
            return json.decoder.scanstring(self.text, i + 1)[1], None  # type: ignore[attr-defined]
        match = _SCALAR.match(self.text, i)
        return (match.end() if match else i + 1), None

    def obj(self, i: int, parsed: Any) -> tuple[int, int | None]:
        mine = parsed is self.target
        i = self.skip(i)
        while i < len(self.text) and self.text[i] != "}":
            if self.text[i] == ",":
                i = self.skip(i + 1)
                continue
            start = i
            key, i = json.decoder.scanstring(self.text, i + 1)  # type: ignore[attr-defined]
            i = self.skip(i)
            i = self.skip(i + 1)  # the colon
            if mine and key == self.key:
                return i, start if self.part == "key" else i
            child = parsed.get(key) if isinstance(parsed, dict) else None
            i, found = self.value(i, child)
            if found is not None:
                return i, found
            i = self.skip(i)
        return i + 1, None

    def array(self, i: int, parsed: Any) -> tuple[int, int | None]:
        items = parsed if isinstance(parsed, list) else []
        index = 0
        i = self.skip(i)
        while i < len(self.text) and self.text[i] != "]":
            if self.text[i] == ",":
                i = self.skip(i + 1)
                continue
            i, found = self.value(i, items[index] if index < len(items) else None)
            if found is not None:
                return i, found
            index += 1
            i = self.skip(i)
        return i + 1, None


def position(text: str, body: Any, where: Where) -> Found:
    """Return the 1-based ``(line, column)`` of the token ``where`` names, if found in ``text``."""
    try:
        offset = _Scan(text, where).value(0, body)[1]
    except (ValueError, IndexError):
        return None
    if offset is None:
        return None
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def locate(error: QueryError, text: str, body: Any) -> None:
    """Add Elasticsearch's positions to ``error`` and its causes, in place.

    A ``failed to parse field`` wrapper takes its cause's position: Elasticsearch reads the
    parser's current token, where the cause stopped it.
    """
    _locate(error, text, body)


def _locate(error: QueryError, text: str, body: Any) -> Found:
    inner = _locate(error.caused_by, text, body) if error.caused_by is not None else None
    found = None
    if error.where is not None:
        found = (
            inner if inner is not None and _is_wrapper(error) else position(text, body, error.where)
        )
        error.where = None
    if found is not None:
        line, col = found
        if error.error_type == "x_content_parse_exception":
            error.reason = f"[{line}:{col}] {error.reason}"
        elif error.error_type == "parsing_exception":
            error.extra.update(line=line, col=col)
    return found if found is not None else inner


def _is_wrapper(error: QueryError) -> bool:
    return error.reason.endswith("]") and "] failed to parse field [" in error.reason
