"""The Elasticsearch errors the Query API keys engine raises, with their exact shapes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

__all__ = [
    "PAYLOAD",
    "QueryError",
    "Where",
    "action_validation",
    "failed_to_parse_field",
    "illegal_argument",
    "parse_exception",
    "parsing",
    "query_shard",
    "shard_failure",
    "suggest",
    "unknown_field",
    "x_content",
]

#: The name of the REST body parser, as it appears in its error messages.
PAYLOAD = "query_api_key_request_payload"
#: Where a parse error points: the parsed object, one of its keys, and ``"key"`` or ``"value"``.
Where = tuple[Any, str, Literal["key", "value"]]


class QueryError(Exception):
    """An error Elasticsearch would answer for a Query API keys request.

    Attributes:
        status: The HTTP status.
        error_type: The ``error.type`` (e.g. ``parsing_exception``).
        reason: The ``error.reason``. The engine sees a parsed body, not its text: parser errors
            carry ``where`` instead, and ``query_locate.locate`` later adds the position
            Elasticsearch reports (a ``[line:col] `` prefix, or ``line``/``col`` fields).
        caused_by: The wrapped cause, rendered as ``caused_by``.
        native: Whether Elasticsearch models this as an ``ElasticsearchException`` (which decides
            what ``root_cause`` shows).
        extra: More fields of the error object (e.g. ``phase`` and ``grouped``).
        where: The token the error is about: ``(container, key, part)`` with ``container`` the
            parsed JSON object holding ``key`` and ``part`` ``"key"`` (the field name) or
            ``"value"``; ``None`` when unknown.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        reason: str,
        *,
        caused_by: QueryError | None = None,
        native: bool = True,
        extra: dict[str, Any] | None = None,
        where: Where | None = None,
    ) -> None:
        """Create the error; see the class attributes."""
        super().__init__(f"{error_type}: {reason}")
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.caused_by = caused_by
        self.native = native
        self.extra = dict(extra or {})
        self.where = where

    def root_causes(self) -> list[QueryError]:
        """Return what Elasticsearch lists as ``root_cause``: the deepest native cause."""
        node: QueryError = self
        if self.error_type == "search_phase_execution_exception" and self.caused_by is not None:
            node = self.caused_by
        while node.native and node.caused_by is not None and node.caused_by.native:
            node = node.caused_by
        return [node]

    def to_dict(self) -> dict[str, Any]:
        """Render this error as a ``caused_by`` node (``error`` without ``root_cause``)."""
        out: dict[str, Any] = {"type": self.error_type, "reason": self.reason, **self.extra}
        if self.caused_by is not None:
            out["caused_by"] = self.caused_by.to_dict()
        return out

    def error_body(self) -> dict[str, Any]:
        """Render the full ``error`` object of the response body, ``root_cause`` first."""
        roots = [
            {"type": r.error_type, "reason": r.reason, **_root_extra(r)} for r in self.root_causes()
        ]
        return {"root_cause": roots, **self.to_dict()}

    def response_body(self) -> dict[str, Any]:
        """Render the whole response body: ``{"error": ..., "status": ...}``."""
        return {"error": self.error_body(), "status": self.status}


def _root_extra(error: QueryError) -> dict[str, Any]:
    return {k: v for k, v in error.extra.items() if k not in ("phase", "grouped")}


def illegal_argument(reason: str, cause: QueryError | None = None) -> QueryError:
    """Return a 400 ``illegal_argument_exception`` (a plain Java ``IllegalArgumentException``)."""
    return QueryError(400, "illegal_argument_exception", reason, caused_by=cause, native=False)


def parsing(
    reason: str, cause: QueryError | None = None, *, where: Where | None = None
) -> QueryError:
    """Return a 400 ``parsing_exception`` (the query DSL parser's error)."""
    return QueryError(400, "parsing_exception", reason, caused_by=cause, where=where)


def x_content(
    reason: str, cause: QueryError | None = None, *, where: Where | None = None
) -> QueryError:
    """Return a 400 ``x_content_parse_exception`` (the object parsers' error)."""
    return QueryError(
        400, "x_content_parse_exception", reason, caused_by=cause, native=False, where=where
    )


def failed_to_parse_field(
    parser: str, field: str, cause: QueryError, *, where: Where | None = None
) -> QueryError:
    """Return the wrapper an object parser puts around an error in one of its fields.

    Elasticsearch places it at the parser's current token, which is where the wrapped error
    stopped the parser: ``query_locate`` uses the cause's position when it has one.
    """
    return x_content(f"[{parser}] failed to parse field [{field}]", cause, where=where)


def parse_exception(reason: str) -> QueryError:
    """Return a 400 ``parse_exception`` (``ElasticsearchParseException``, e.g. bad dates)."""
    return QueryError(400, "parse_exception", reason)


def query_shard(reason: str, cause: QueryError | None = None) -> QueryError:
    """Return a ``query_shard_exception`` raised while a shard builds the query."""
    return QueryError(
        400,
        "query_shard_exception",
        reason,
        caused_by=cause,
        extra={"index": ".security-7"},
    )


def action_validation(messages: Iterable[str]) -> QueryError:
    """Return a 400 ``action_request_validation_exception`` listing ``messages``."""
    text = "".join(f"{i}: {m};" for i, m in enumerate(messages, start=1))
    return QueryError(400, "action_request_validation_exception", f"Validation Failed: {text}")


def shard_failure(cause: QueryError) -> QueryError:
    """Wrap an error raised on the shard the way the search phase reports it (all shards failed)."""
    return QueryError(
        cause.status,
        "search_phase_execution_exception",
        "all shards failed",
        caused_by=cause,
        extra={"phase": "query", "grouped": True},
    )


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def suggest(unknown: str, candidates: Iterable[str]) -> str:
    """Return Elasticsearch's `` did you mean [x]?`` suffix for an unknown name (or ``""``).

    Candidates closer than half their length (Lucene's Levenshtein similarity above 0.5) are
    suggested, the closest first, ties by name.
    """
    scored: list[tuple[float, str]] = []
    for candidate in set(candidates):
        longest = max(len(unknown), len(candidate))
        if longest == 0:
            continue
        similarity = 1.0 - _levenshtein(unknown, candidate) / longest
        if similarity > 0.5:
            scored.append((-similarity, candidate))
    if not scored:
        return ""
    keys = [name for _, name in sorted(scored)]
    if len(keys) == 1:
        return f" did you mean [{keys[0]}]?"
    return f" did you mean any of [{', '.join(keys)}]?"


def unknown_field(
    parser: str, field: str, candidates: Iterable[str], *, where: Where | None = None
) -> QueryError:
    """Return an object parser's ``unknown field`` error, with its suggestion."""
    return x_content(f"[{parser}] unknown field [{field}]{suggest(field, candidates)}", where=where)
