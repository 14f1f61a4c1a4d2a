"""The Query API keys engine: ``POST /_security/_query/api_key`` over a ``SearchIndex``."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rotator.sandbox.docindex import SearchIndex
from rotator.sandbox.keyindex import Doc
from rotator.sandbox.query_aggs import AggNode, check_aggs, compute_aggs, parse_aggs
from rotator.sandbox.query_dsl import QNode, check_query, parse_query, token_name
from rotator.sandbox.query_errors import (
    PAYLOAD,
    QueryError,
    action_validation,
    failed_to_parse_field,
    illegal_argument,
    query_shard,
    shard_failure,
    unknown_field,
    x_content,
)
from rotator.sandbox.query_fields import FieldSet
from rotator.sandbox.query_match import Hint, Matcher, compile_query
from rotator.sandbox.query_sort import SortKeys, SortSpec, check_sort, parse_sort

__all__ = [
    "MAX_RESULT_WINDOW",
    "QueryError",
    "QueryRequest",
    "QueryResult",
    "execute_query",
    "parse_request",
]

#: ``index.max_result_window`` of the security index.
MAX_RESULT_WINDOW = 10_000
_DEFAULT_SIZE = 10
_BODY_FIELDS = ("query", "aggregations", "aggs", "from", "size", "sort", "search_after")
_PLAIN_FIELDS = ("query", "from", "size", "sort", "search_after")

Visible = Callable[[Any], bool]


@dataclass(slots=True)
class QueryResult:
    """What a Query API keys request found.

    Attributes:
        total: How many visible keys match (exact; ``track_total_hits`` is forced on).
        hits: The page: each key with its ``_sort`` values (``None`` when no sort was given).
        aggregations: The aggregation results, or ``None`` when none were requested (or when
            nothing matched: Elasticsearch then answers its empty response, without them).
    """

    total: int
    hits: list[tuple[Doc, list[Any] | None]] = field(default_factory=list)
    aggregations: dict[str, Any] | None = None


@dataclass(slots=True)
class QueryRequest:
    """A parsed Query API keys request body."""

    query: QNode | None = None
    aggs: list[AggNode] | None = None
    from_: int | None = None
    size: int | None = None
    sort: list[SortSpec] | None = None
    search_after: list[Any] | None = None


# -- the REST layer: parsing the body -------------------------------------------------------


def _int_field(name: str, value: Any, payload: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise x_content(f"[{payload}] {name} doesn't support values of type: {token_name(value)}")
    try:
        return int(value) if not isinstance(value, str) else int(float(value.strip()))
    except ValueError as exc:
        cause = QueryError(
            400, "number_format_exception", f'For input string: "{value}"', native=False
        )
        raise failed_to_parse_field(payload, name, cause) from exc


def _parse_field(
    name: str, value: Any, request: QueryRequest, payload: str, fields: tuple[str, ...]
) -> None:
    if name == "query":
        if not isinstance(value, Mapping):
            raise x_content(
                f"[{payload}] query doesn't support values of type: {token_name(value)}"
            )
        request.query = parse_query(value)
    elif name in ("aggs", "aggregations"):
        if not isinstance(value, Mapping):
            raise x_content(
                f"[{payload}] {name} doesn't support values of type: {token_name(value)}"
            )
        if request.aggs is not None:
            raise x_content(
                f"Failed to build [{payload}] after last required field arrived",
                illegal_argument("Duplicate 'aggs' or 'aggregations' field"),
            )
        request.aggs = parse_aggs(value)
    elif name in ("from", "size"):
        number = _int_field(name, value, payload)
        if name == "from":
            request.from_ = number
        else:
            request.size = number
    elif name == "sort":
        if not isinstance(value, list | Mapping):
            raise x_content(f"[{payload}] sort doesn't support values of type: {token_name(value)}")
        request.sort = parse_sort(value)
    elif name == "search_after":
        _parse_search_after(value, request, payload)
    else:
        raise unknown_field(payload, name, fields)


def _parse_search_after(value: Any, request: QueryRequest, payload: str) -> None:
    if not isinstance(value, list):
        raise x_content(
            f"[{payload}] search_after doesn't support values of type: {token_name(value)}"
        )
    for item in value:
        if not (item is None or isinstance(item, str | int | float | bool)):
            raise QueryError(
                400,
                "parsing_exception",
                "Expected [VALUE_STRING] or [VALUE_NUMBER] or [VALUE_BOOLEAN] or [VALUE_NULL] but "
                f"found [{token_name(item)}] inside search_after.",
            )
    if not value:
        raise illegal_argument("Values must contains at least one value.")
    request.search_after = list(value)


def parse_request(
    body: Mapping[str, Any] | None, payload: str = PAYLOAD, *, aggs: bool = True
) -> QueryRequest:
    """Parse a request body as ``RestQueryApiKeyAction`` does (strictly).

    ``RestQueryRoleAction`` and ``RestQueryUserAction`` parse the same body without
    aggregations, under their own parser name (``payload``).

    Raises:
        QueryError: ``x_content_parse_exception`` for unknown or malformed top-level fields,
            wrapping the query and aggregation parsers' errors.
    """
    request = QueryRequest()
    if body is None:
        return request
    if not isinstance(body, Mapping):
        raise x_content(f"[{payload}] Expected START_OBJECT but was: {token_name(body)}")
    fields = _BODY_FIELDS if aggs else _PLAIN_FIELDS
    for name, value in body.items():
        if name not in fields:
            raise unknown_field(payload, name, fields, where=(body, name, "key"))
        try:
            _parse_field(name, value, request, payload, fields)
        except QueryError as error:
            if error.error_type == "x_content_parse_exception" and error.reason.startswith(
                (f"[{payload}]", f"Failed to build [{payload}]")
            ):
                error.where = error.where or (body, name, "value")
                raise
            raise failed_to_parse_field(payload, name, error, where=(body, name, "value")) from None
    return request


# -- the transport action: validation and field translation ---------------------------------


def _validate(request: QueryRequest) -> None:
    messages = []
    if request.from_ is not None and request.from_ < 0:
        messages.append(f"[from] parameter cannot be negative but was [{request.from_}]")
    if request.size is not None and request.size < 0:
        messages.append(f"[size] parameter cannot be negative but was [{request.size}]")
    if messages:
        raise action_validation(messages)


def _check(request: QueryRequest, fields: FieldSet) -> None:
    if request.query is not None:
        check_query(request.query, fields)
    if request.sort is not None:
        check_sort(request.sort, fields)
    if request.aggs is not None:
        check_aggs(request.aggs)
    if request.search_after and (request.from_ or 0) > 0:
        raise action_validation(["[from] parameter must be set to 0 when [search_after] is used"])


# -- the shard: running the search ----------------------------------------------------------


def _query_failure(error: QueryError) -> QueryError:
    """Wrap an error raised while a shard builds the query (``SearchExecutionContext.toQuery``)."""
    if error.error_type in ("query_shard_exception", "parsing_exception"):
        return shard_failure(error)
    return shard_failure(query_shard(f"failed to create query: {error.reason}", error))


def _empty(hint: Hint) -> bool:
    """Tell whether ``hint`` is a range nothing lies in (``lo`` above ``hi``)."""
    return hint.lo is not None and hint.hi is not None and hint.lo > hint.hi  # type: ignore[operator]


def _candidates(index: SearchIndex, hint: Hint | None) -> Iterable[Doc]:
    if hint is None:
        return index
    if _empty(hint):
        return ()
    if hint.field == "name":
        return index.name_range(
            hint.lo if isinstance(hint.lo, str) else None,
            hint.hi if isinstance(hint.hi, str) else None,
            inclusive=(hint.lo_inc, hint.hi_inc),
        )
    return index.date_range(
        hint.field,
        hint.lo if isinstance(hint.lo, int) else None,
        hint.hi if isinstance(hint.hi, int) else None,
    )


def _candidate_count(index: SearchIndex, hint: Hint | None) -> int:
    """Count the keys in the index range of ``hint`` (every key without one): two bisects."""
    if hint is None:
        return len(index)
    if _empty(hint):
        return 0
    if hint.field == "name":
        return index.count_name_range(
            hint.lo if isinstance(hint.lo, str) else None,
            hint.hi if isinstance(hint.hi, str) else None,
            inclusive=(hint.lo_inc, hint.hi_inc),
        )
    return index.count_date_range(
        hint.field,
        hint.lo if isinstance(hint.lo, int) else None,
        hint.hi if isinstance(hint.hi, int) else None,
    )


def _filtered(docs: Iterable[Doc], matcher: Matcher, visible: Visible | None) -> Iterator[Doc]:
    pred = matcher.pred
    if visible is None:
        return (d for d in docs if pred(d))
    return (d for d in docs if pred(d) and visible(d))


def _walk_page(
    keys: SortKeys,
    matcher: Matcher,
    visible: Visible | None,
    after: tuple[Any, ...] | None,
    wanted: int,
) -> list[Doc]:
    hint = matcher.hint
    primary = keys.primary
    assert primary is not None
    assert primary.field is not None
    bounds = None
    if hint is not None and hint.field == primary.field.name:
        bounds = (hint.lo, hint.hi)
    ordered = keys.in_date_order(after) if bounds is None else None
    if ordered is not None:  # the index's order is the sort's: take the page as it comes
        return list(itertools.islice(_filtered(ordered, matcher, visible), wanted))
    out: list[Doc] = []
    for group in keys.walk(after, bounds):
        matching = list(_filtered(group, matcher, visible))
        if not matching:
            continue
        ranked = (
            sorted((keys.key(d), d) for d in matching)
            if len(matching) > 1
            else [(keys.key(matching[0]), matching[0])]
        )
        for key, doc in ranked:
            if after is None or key[: len(after)] > after:
                out.append(doc)
        if len(out) >= wanted:
            break
    return out[:wanted]


def _top(
    docs: Iterable[Doc], keys: SortKeys | None, after: tuple[Any, ...] | None, wanted: int
) -> list[Doc]:
    if keys is None:
        return heapq.nsmallest(wanted, docs, key=lambda d: d.seq)
    scored = ((keys.key(d), d) for d in docs)
    if after is not None:
        n = len(after)
        scored = ((k, d) for k, d in scored if k[:n] > after)
    return [d for _, d in heapq.nsmallest(wanted, scored, key=lambda kd: kd[0])]


@dataclass(slots=True)
class _Run:
    index: SearchIndex
    request: QueryRequest
    visible: Visible | None
    now_ms: int
    typed_keys: bool

    def execute(self) -> QueryResult:
        request = self.request
        try:
            matcher = compile_query(request.query, self.index, self.now_ms)
        except QueryError as error:
            raise _query_failure(error) from None
        if request.aggs is not None:
            compute_aggs(request.aggs, [], self.index, self.now_ms)
        keys = SortKeys(request.sort, self.index, self.now_ms) if request.sort else None
        after = None
        if request.search_after is not None:
            if keys is None:
                raise illegal_argument("Sort must contain at least one field.")
            after = keys.after_key(request.search_after)
        from_ = request.from_ or 0
        size = _DEFAULT_SIZE if request.size is None else request.size
        if from_ + size > MAX_RESULT_WINDOW:
            raise illegal_argument(
                f"Result window is too large, from + size must be less than or equal to: "
                f"[{MAX_RESULT_WINDOW}] but was [{from_ + size}]. See the scroll api for a more "
                "efficient way to request large data sets. This limit can be set by changing the "
                "[index.max_result_window] index level setting."
            )
        return self.search(matcher, keys, after, from_, size)

    def search(
        self,
        matcher: Matcher,
        keys: SortKeys | None,
        after: tuple[Any, ...] | None,
        from_: int,
        size: int,
    ) -> QueryResult:
        candidates = _candidate_count(self.index, matcher.hint)
        matches: list[Doc] | None = None
        if self.request.aggs is not None:
            matches = list(self.matching(matcher))
            total = len(matches)
        elif matcher.exact and self.visible is None:
            total = candidates
        else:
            total = self.count(matcher)
        if total == 0:
            return QueryResult(0)
        page: list[Doc] = []
        if size > 0:
            page = self.page(matcher, keys, after, from_ + size, total, candidates, matches)
        hits = [(d, keys.values(d) if keys is not None else None) for d in page[from_:]]
        aggregations = None
        if self.request.aggs is not None and matches is not None:
            aggregations = compute_aggs(
                self.request.aggs, matches, self.index, self.now_ms, typed_keys=self.typed_keys
            )
        return QueryResult(total, hits, aggregations)

    def count(self, matcher: Matcher) -> int:
        """Count the visible matching keys; remembered per query and visibility while the index
        is unchanged (a visibility that is not a value, such as a closure, is never equal to
        another request's, so it only ever finds its own count)."""
        try:
            key = ("total", self.request.query, matcher.dates, self.visible)
            hash(key)
        except TypeError:
            return sum(1 for _ in self.matching(matcher))
        return self.index.memo(key, lambda: sum(1 for _ in self.matching(matcher)))

    def matching(self, matcher: Matcher) -> Iterator[Doc]:
        """Iterate over the visible matching keys, in ``seq`` order within the hint's range."""
        return _filtered(_candidates(self.index, matcher.hint), matcher, self.visible)

    def page(
        self,
        matcher: Matcher,
        keys: SortKeys | None,
        after: tuple[Any, ...] | None,
        wanted: int,
        total: int,
        candidates: int,
        matches: list[Doc] | None,
    ) -> list[Doc]:
        """Select the first ``wanted`` keys in sort order (after ``search_after``).

        Walking the primary sort ordering stops after ``wanted`` matches; it is chosen when the
        expected walk (``wanted`` times the keys per match) is shorter than a pass over the
        candidates or matches that a bounded heap selection needs.
        """
        if keys is not None and keys.can_walk():
            primary = keys.primary
            assert primary is not None
            assert primary.field is not None
            same_field = matcher.hint is not None and matcher.hint.field == primary.field.name
            domain = candidates if same_field else len(self.index)
            pool_size = len(matches) if matches is not None else candidates
            if wanted * domain / total <= pool_size:
                return _walk_page(keys, matcher, self.visible, after, wanted)
        pool: Iterable[Doc] = matches if matches is not None else self.matching(matcher)
        return _top(pool, keys, after, wanted)


def execute_query(
    index: SearchIndex,
    body: Mapping[str, Any] | None,
    *,
    visible: Visible | None = None,
    now_ms: int,
    typed_keys: bool = False,
    payload: str = PAYLOAD,
    aggs: bool = True,
) -> QueryResult:
    """Run a Query API keys (or query roles, query users) request the way Elasticsearch does.

    Args:
        index: The keys (roles, users) to search; its field table decides what may be queried.
        body: The request body (``None`` or ``{}`` means ``match_all``).
        visible: The ownership filter for callers that may only see some keys
            (``manage_own_api_key``); totals and aggregations count visible keys only.
        now_ms: The value of ``now`` in date math, epoch milliseconds.
        typed_keys: Prefix aggregation names with their type (``sterms#name``...).
        payload: The body parser's name, as error messages show it.
        aggs: Whether the body may carry aggregations (only the Query API keys API allows them).

    Returns:
        The total, the page of keys with their ``_sort`` values, and the aggregations.

    Raises:
        QueryError: Exactly what Elasticsearch answers for a bad request: body parse errors,
            request validation, refused query types/fields/aggregations, and search-phase
            failures (wrapped as ``search_phase_execution_exception``).
    """
    request = parse_request(body, payload, aggs=aggs)
    _validate(request)
    _check(request, index.fields)
    try:
        return _Run(index, request, visible, now_ms, typed_keys).execute()
    except QueryError as error:
        if error.error_type == "search_phase_execution_exception":
            raise
        raise shard_failure(error) from None
