"""Aggregations of the Query API keys API: parsing, checking and computing, with ES's shapes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rotator.sandbox.docindex import SearchIndex
from rotator.sandbox.keyindex import Doc
from rotator.sandbox.query_dates import format_date, parse_date, parse_zone
from rotator.sandbox.query_dsl import QNode, check_query, parse_query, token_name
from rotator.sandbox.query_errors import (
    QueryError,
    failed_to_parse_field,
    illegal_argument,
    parsing,
    suggest,
    unknown_field,
)
from rotator.sandbox.query_fields import API_KEY_FIELDS, Field, Value
from rotator.sandbox.query_match import compile_query

__all__ = ["AggNode", "check_aggs", "compute_aggs", "parse_aggs"]

_SUPPORTED = (
    "terms",
    "range",
    "date_range",
    "missing",
    "cardinality",
    "value_count",
    "composite",
    "filter",
    "filters",
)
_PIPELINES = frozenset(
    {
        "avg_bucket",
        "bucket_count_ks_test",
        "bucket_correlation",
        "bucket_script",
        "bucket_selector",
        "bucket_sort",
        "change_point",
        "cumulative_cardinality",
        "cumulative_sum",
        "derivative",
        "extended_stats_bucket",
        "inference",
        "max_bucket",
        "min_bucket",
        "moving_fn",
        "moving_percentiles",
        "normalize",
        "percentiles_bucket",
        "serial_diff",
        "stats_bucket",
        "sum_bucket",
    }
)
_OTHERS = frozenset(
    {
        "adjacency_matrix",
        "auto_date_histogram",
        "avg",
        "boxplot",
        "categorize_text",
        "children",
        "date_histogram",
        "diversified_sampler",
        "extended_stats",
        "frequent_item_sets",
        "geo_bounds",
        "geo_centroid",
        "geo_distance",
        "geohash_grid",
        "geotile_grid",
        "global",
        "histogram",
        "ip_prefix",
        "ip_range",
        "matrix_stats",
        "max",
        "median_absolute_deviation",
        "min",
        "multi_terms",
        "nested",
        "parent",
        "percentile_ranks",
        "percentiles",
        "random_sampler",
        "rare_terms",
        "reverse_nested",
        "sampler",
        "scripted_metric",
        "significant_terms",
        "significant_text",
        "stats",
        "string_stats",
        "sum",
        "t_test",
        "time_series",
        "top_hits",
        "top_metrics",
        "variable_width_histogram",
        "weighted_avg",
    }
)
_KNOWN = frozenset(_SUPPORTED) | _PIPELINES | _OTHERS
_METRICS = frozenset({"cardinality", "value_count"})
_VALID_NAME = re.compile(r"[^\[\]>]+")

_KEYS: dict[str, tuple[str, ...]] = {
    "terms": (
        "field",
        "script",
        "size",
        "shard_size",
        "min_doc_count",
        "shard_min_doc_count",
        "order",
        "missing",
        "include",
        "exclude",
        "execution_hint",
        "collect_mode",
        "show_term_doc_count_error",
        "format",
        "value_type",
    ),
    "range": ("field", "script", "ranges", "keyed", "format", "missing", "value_type"),
    "date_range": (
        "field",
        "script",
        "ranges",
        "keyed",
        "format",
        "missing",
        "time_zone",
        "value_type",
    ),
    "missing": ("field", "script", "missing", "value_type", "format"),
    "cardinality": (
        "field",
        "script",
        "missing",
        "precision_threshold",
        "execution_hint",
        "value_type",
        "format",
    ),
    "value_count": ("field", "script", "missing", "value_type", "format"),
    "composite": ("sources", "size", "after"),
    "filters": ("filters", "other_bucket", "other_bucket_key", "keyed"),
}


@dataclass(slots=True)
class AggNode:
    """One parsed aggregation."""

    name: str
    type: str
    body: Any
    subs: list[AggNode] = field(default_factory=list)
    query: QNode | None = None
    filters: list[tuple[str | None, QNode]] = field(default_factory=list)


# -- parsing (the REST layer) ---------------------------------------------------------------


def parse_aggs(raw: Any) -> list[AggNode]:
    """Parse an ``aggs`` object as ``AggregatorFactories.parseAggregators`` does.

    Raises:
        QueryError: ``parsing_exception`` and the per-type parsers' errors.
    """
    if not isinstance(raw, Mapping):
        raise parsing(f"Expected [START_OBJECT] but found [{token_name(raw)}]")
    return [_parse_agg(name, definition) for name, definition in raw.items()]


def _parse_agg(name: str, definition: Any) -> AggNode:
    if not _VALID_NAME.fullmatch(name):
        raise parsing(
            f"Invalid aggregation name [{name}]. Aggregation names can contain any character "
            "except '[', ']', and '>'"
        )
    if not isinstance(definition, Mapping):
        raise parsing(
            f"Aggregation definition for [{name} starts with a [{token_name(definition)}], "
            "expected a [START_OBJECT]."
        )
    agg_type: str | None = None
    body: Any = None
    subs: list[AggNode] | None = None
    for key, value in definition.items():
        if not isinstance(value, Mapping):
            raise parsing(
                f"Expected [START_OBJECT] under [{key}], but got a [{token_name(value)}] in "
                f"[{name}]"
            )
        if key in ("aggs", "aggregations"):
            if subs is not None:
                raise parsing(f"Found two sub aggregation definitions under [{name}]")
            subs = parse_aggs(value)
        elif key == "meta":
            continue
        elif agg_type is not None:
            raise parsing(
                f"Found two aggregation type definitions in [{name}]: [{agg_type}] and [{key}]"
            )
        else:
            if key not in _KNOWN:
                raise parsing(f"Unknown aggregation type [{key}]{suggest(key, _KNOWN)}")
            agg_type, body = key, value
    if agg_type is None:
        raise parsing(f"Missing definition for aggregation [{name}]")
    node = AggNode(name, agg_type, body, subs or [])
    _parse_body(node)
    return node


def _parse_body(node: AggNode) -> None:
    if node.type == "filter":
        node.query = parse_query(node.body)
        return
    allowed = _KEYS.get(node.type)
    if allowed is None:
        return
    if node.type == "filters":
        _parse_filters(node)
        return
    for key in node.body:
        if key not in allowed:
            raise unknown_field(node.type, key, allowed)
    size = node.body.get("size")
    bad_size = not isinstance(size, int) or isinstance(size, bool) or size <= 0
    if size is not None and node.type in ("terms", "composite") and bad_size:
        raise failed_to_parse_field(
            node.type,
            "size",
            illegal_argument(f"[size] must be greater than 0. Found [{size}] in [{node.name}]"),
        )


def _parse_filters(node: AggNode) -> None:
    body = node.body
    raw = body.get("filters")
    for key, value in body.items():
        if key not in _KEYS["filters"]:
            raise parsing(f"Unknown key for a {token_name(value)} in [{node.name}]: [{key}].")
    if isinstance(raw, Mapping):
        node.filters = [(k, parse_query(q)) for k, q in sorted(raw.items())]
    elif isinstance(raw, list):
        node.filters = [(None, parse_query(q)) for q in raw]
    else:
        raise illegal_argument(f"[filters] cannot be null in [{node.name}]")


# -- checking (the transport action) --------------------------------------------------------


def check_aggs(nodes: Sequence[AggNode]) -> None:
    """Refuse what ``ApiKeyAggregationsBuilder.process`` refuses.

    Raises:
        QueryError: ``illegal_argument_exception`` for unsupported types, scripts and fields.
    """
    for node in nodes:
        if node.type in _PIPELINES:
            raise illegal_argument(f"Unsupported aggregation of type [{node.type}]")
    for node in nodes:
        _check_one(node)


def _check_one(node: AggNode) -> None:
    for sub in node.subs:
        if sub.type in _PIPELINES:
            raise illegal_argument(f"Unsupported aggregation of type [{sub.type}]")
    if node.type not in _SUPPORTED:
        raise illegal_argument(f"Unsupported API Keys agg [{node.name}] of type [{node.type}]")
    if node.type == "composite":
        _check_composite(node)
    elif node.type == "filter":
        assert node.query is not None
        check_query(node.query, API_KEY_FIELDS)
    elif node.type == "filters":
        for _, query in node.filters:
            check_query(query, API_KEY_FIELDS)
    else:
        if node.body.get("script") is not None:
            raise illegal_argument(f"Unsupported script value source for [{node.name}] agg")
        _field_of(node.body)
    for sub in node.subs:
        _check_one(sub)


def _field_of(body: Mapping[str, Any]) -> Field:
    name = body.get("field")
    if name is None:
        raise illegal_argument("Required one of fields [field, script], but none were specified.")
    return API_KEY_FIELDS.translate(str(name))


def _sources(node: AggNode) -> list[tuple[str, str, Mapping[str, Any]]]:
    raw = node.body.get("sources")
    if not isinstance(raw, list):
        raise illegal_argument("Required [sources]")
    out: list[tuple[str, str, Mapping[str, Any]]] = []
    for item in raw:
        if not isinstance(item, Mapping) or len(item) != 1:
            raise parsing(
                "Failed to parse object: expecting token of type [START_OBJECT] but found "
                f"[{token_name(item)}]"
            )
        ((name, definition),) = item.items()
        if not isinstance(definition, Mapping) or len(definition) != 1:
            raise parsing(f"Invalid source definition for [{name}]")
        ((kind, body),) = definition.items()
        out.append((name, kind, body if isinstance(body, Mapping) else {}))
    return out


def _check_composite(node: AggNode) -> None:
    seen: set[str] = set()
    for name, kind, body in _sources(node):
        if body.get("script") is not None:
            raise illegal_argument(
                f"Unsupported script value source for [{name}] of composite agg [{node.name}]"
            )
        if kind != "terms":
            raise illegal_argument(
                f"Unsupported value source type for [{name}] of composite agg [{node.name}]."
                "Only [terms] value sources are allowed."
            )
        if name in seen:
            raise illegal_argument(
                f"Composite source names must be unique, found duplicates: [{name}]"
            )
        seen.add(name)
        _field_of(body)


# -- computing (the shard) --------------------------------------------------------------------


@dataclass(slots=True)
class _Ctx:
    index: SearchIndex
    now_ms: int
    typed_keys: bool


def compute_aggs(
    nodes: Sequence[AggNode],
    docs: Sequence[Doc],
    index: SearchIndex,
    now_ms: int,
    *,
    typed_keys: bool = False,
) -> dict[str, Any]:
    """Compute checked aggregations over ``docs`` (the visible matching keys).

    Raises:
        QueryError: Shard-side errors (range aggregations on keywords...), not yet wrapped.
    """
    return _compute(nodes, docs, _Ctx(index, now_ms, typed_keys))


def _compute(nodes: Sequence[AggNode], docs: Sequence[Doc], ctx: _Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for node in nodes:
        if node.subs and node.type in _METRICS:
            raise QueryError(
                400,
                "aggregation_initialization_exception",
                f"Aggregator [{node.name}] of type [{node.type}] cannot accept sub-aggregations",
            )
        result, typed = _COMPUTERS[node.type](node, docs, ctx)
        out[f"{typed}#{node.name}" if ctx.typed_keys else node.name] = result
    return out


def _values(fld: Field, doc: Doc, ctx: _Ctx, missing: Value | None) -> tuple[Value, ...]:
    values = fld.values(doc, ctx.index)
    if not values and missing is not None:
        return (missing,)
    return values


def _missing_value(fld: Field, raw: Any, ctx: _Ctx) -> Value | None:
    if raw is None:
        return None
    if fld.kind == "keyword":
        return _text(raw)
    if fld.kind == "boolean":
        return _text(raw) == "true"
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return int(raw)
    return parse_date(_text(raw), now_ms=ctx.now_ms, round_up=False)


def _with_subs(
    node: AggNode, bucket: dict[str, Any], docs: Sequence[Doc], ctx: _Ctx
) -> dict[str, Any]:
    if node.subs:
        bucket.update(_compute(node.subs, docs, ctx))
    return bucket


def _key_fields(fld: Field, value: Value, fmt: str | None) -> dict[str, Any]:
    if fld.kind == "boolean":
        return {"key": int(bool(value)), "key_as_string": "true" if value else "false"}
    if fld.kind == "date":
        return {"key": value, "key_as_string": format_date(int(value), fmt)}
    return {"key": value}


def _terms(node: AggNode, docs: Sequence[Doc], ctx: _Ctx) -> tuple[dict[str, Any], str]:
    body = node.body
    fld = _field_of(body)
    missing = _missing_value(fld, body.get("missing"), ctx)
    accept = _include_exclude(body.get("include"), body.get("exclude"))
    groups: dict[Value, list[Doc]] = {}
    for doc in docs:
        for value in set(_values(fld, doc, ctx, missing)):
            if accept(value):
                groups.setdefault(value, []).append(doc)
    min_count = int(body.get("min_doc_count", 1))
    ordered = sorted(
        ((v, d) for v, d in groups.items() if len(d) >= min_count), key=_terms_order(body)
    )
    size = int(body.get("size", 10))
    shown, rest = ordered[:size], ordered[size:]
    buckets = [
        _with_subs(node, {**_key_fields(fld, v, body.get("format")), "doc_count": len(d)}, d, ctx)
        for v, d in shown
    ]
    result = {
        "doc_count_error_upper_bound": 0,
        "sum_other_doc_count": sum(len(d) for _, d in rest),
        "buckets": buckets,
    }
    return result, "sterms" if fld.kind == "keyword" else "lterms"


def _terms_order(body: Mapping[str, Any]) -> Callable[[tuple[Value, list[Doc]]], Any]:
    raw = body.get("order", {"_count": "desc"})
    items = raw if isinstance(raw, list) else [raw]
    criteria: list[tuple[str, bool]] = []
    for item in items:
        if not isinstance(item, Mapping):
            raise illegal_argument(f"Invalid terms aggregation order [{item}]")
        for path, direction in item.items():
            if path not in ("_count", "_key"):
                raise illegal_argument(
                    f"Invalid aggregation order path [{path}]. The provided aggregation [{path}] "
                    "either does not exist, or is a pipeline aggregation and cannot be used to "
                    "sort the buckets."
                )
            criteria.append((path, str(direction).lower() == "desc"))
    if not any(path == "_key" for path, _ in criteria):
        criteria.append(("_key", False))

    def key(item: tuple[Value, list[Doc]]) -> tuple[Any, ...]:
        value, docs = item
        parts: list[Any] = []
        for path, desc in criteria:
            if path == "_count":
                parts.append(-len(docs) if desc else len(docs))
            elif isinstance(value, str):
                parts.append(_RevStr(value) if desc else value)
            else:
                parts.append(-int(value) if desc else int(value))
        return tuple(parts)

    return key


class _RevStr(str):
    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)

    def __gt__(self, other: str) -> bool:
        return str.__lt__(self, other)


def _include_exclude(include: Any, exclude: Any) -> Callable[[Value], bool]:
    def matcher(spec: Any, default: bool) -> Callable[[str], bool]:
        if spec is None:
            return lambda _: default
        if isinstance(spec, list):
            wanted = {_text(v) for v in spec}
            return lambda v: v in wanted
        if isinstance(spec, str):
            regex = re.compile(spec)
            return lambda v: regex.fullmatch(v) is not None
        raise illegal_argument("Unsupported include/exclude specification")

    inc, exc = matcher(include, True), matcher(exclude, False)
    return lambda v: inc(_text(v)) and not exc(_text(v))


def _cardinality(node: AggNode, docs: Sequence[Doc], ctx: _Ctx) -> tuple[dict[str, Any], str]:
    fld = _field_of(node.body)
    missing = _missing_value(fld, node.body.get("missing"), ctx)
    seen = {v for doc in docs for v in _values(fld, doc, ctx, missing)}
    return {"value": len(seen)}, "cardinality"


def _value_count(node: AggNode, docs: Sequence[Doc], ctx: _Ctx) -> tuple[dict[str, Any], str]:
    fld = _field_of(node.body)
    missing = _missing_value(fld, node.body.get("missing"), ctx)
    total = sum(len(set(_values(fld, doc, ctx, missing))) for doc in docs)
    return {"value": total}, "value_count"


def _missing(node: AggNode, docs: Sequence[Doc], ctx: _Ctx) -> tuple[dict[str, Any], str]:
    fld = _field_of(node.body)
    hits = [d for d in docs if not fld.values(d, ctx.index)]
    return _with_subs(node, {"doc_count": len(hits)}, hits, ctx), "missing"


def _filter(node: AggNode, docs: Sequence[Doc], ctx: _Ctx) -> tuple[dict[str, Any], str]:
    pred = compile_query(node.query, ctx.index, ctx.now_ms).pred
    hits = [d for d in docs if pred(d)]
    return _with_subs(node, {"doc_count": len(hits)}, hits, ctx), "filter"


def _filters(node: AggNode, docs: Sequence[Doc], ctx: _Ctx) -> tuple[dict[str, Any], str]:
    body = node.body
    other_key = body.get("other_bucket_key")
    other = bool(body.get("other_bucket", False)) or other_key is not None
    named = isinstance(body.get("filters"), Mapping)
    keyed = named and bool(body.get("keyed", True))
    preds = [(k, compile_query(q, ctx.index, ctx.now_ms).pred) for k, q in node.filters]
    entries: list[tuple[str | None, dict[str, Any]]] = []
    matched_any: set[int] = set()
    for key, pred in preds:
        hits = [d for d in docs if pred(d)]
        matched_any.update(d.seq for d in hits)
        entries.append((key, _with_subs(node, {"doc_count": len(hits)}, hits, ctx)))
    if other:
        rest = [d for d in docs if d.seq not in matched_any]
        bucket = _with_subs(node, {"doc_count": len(rest)}, rest, ctx)
        entries.append((_text(other_key) if other_key is not None else "_other_", bucket))
    if keyed:
        return {"buckets": {str(k): b for k, b in entries}}, "filters"
    listed = [({"key": k, **b} if named else b) for k, b in entries]
    return {"buckets": listed}, "filters"


@dataclass(frozen=True, slots=True)
class _Range:
    key: str | None
    lo: float
    hi: float
    lo_text: str | None
    hi_text: str | None


def _range_bound(
    raw: Any, fld: Field, body: Mapping[str, Any], ctx: _Ctx, is_date: bool
) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if not is_date and fld.kind != "date":
        try:
            return float(_text(raw))
        except ValueError as exc:
            raise illegal_argument(f'For input string: "{raw}"') from exc
    zone = body.get("time_zone")
    tz = None if zone is None else parse_zone(str(zone))
    return float(
        parse_date(_text(raw), now_ms=ctx.now_ms, round_up=False, fmt=body.get("format"), zone=tz)
    )


def _ranges(node: AggNode, docs: Sequence[Doc], ctx: _Ctx) -> tuple[dict[str, Any], str]:
    body = node.body
    fld = _field_of(body)
    is_date = node.type == "date_range"
    if fld.kind == "keyword" or (is_date and fld.kind != "date"):
        raise illegal_argument(
            f"Field [{fld.index_name}] of type [{fld.type_name}] is not supported for "
            f"aggregation [{node.type}]"
        )
    raw_ranges = body.get("ranges")
    if not isinstance(raw_ranges, list) or not raw_ranges:
        raise illegal_argument(f"No [ranges] specified for the [{node.name}] aggregation")
    fmt = body.get("format")
    zone = body.get("time_zone")
    tz = None if zone is None else parse_zone(str(zone))
    shown = fld.kind == "date"
    ranges: list[_Range] = []
    for item in raw_ranges:
        lo = _range_bound(item.get("from"), fld, body, ctx, is_date)
        hi = _range_bound(item.get("to"), fld, body, ctx, is_date)
        lo_v = float("-inf") if lo is None else lo
        hi_v = float("inf") if hi is None else hi
        lo_text = None if lo is None or not shown else format_date(int(lo), fmt, tz)
        hi_text = None if hi is None or not shown else format_date(int(hi), fmt, tz)
        ranges.append(_Range(item.get("key"), lo_v, hi_v, lo_text, hi_text))
    ranges.sort(key=lambda r: (r.lo, r.hi))
    missing = _missing_value(fld, body.get("missing"), ctx)
    buckets: list[tuple[str, dict[str, Any]]] = []
    for r in ranges:
        hits = [
            d for d in docs if any(r.lo <= float(v) < r.hi for v in _values(fld, d, ctx, missing))
        ]
        buckets.append((_range_key(r, fld), _range_bucket(node, r, hits, ctx, fld)))
    if body.get("keyed", False):
        return {"buckets": dict(buckets)}, node.type
    return {"buckets": [b for _, b in buckets]}, node.type


def _range_key(r: _Range, fld: Field) -> str:
    if r.key is not None:
        return str(r.key)

    def part(value: float, text: str | None) -> str:
        if value in (float("inf"), float("-inf")):
            return "*"
        return text if text is not None else repr(value)

    return f"{part(r.lo, r.lo_text)}-{part(r.hi, r.hi_text)}"


def _range_bucket(
    node: AggNode, r: _Range, hits: list[Doc], ctx: _Ctx, fld: Field
) -> dict[str, Any]:
    bucket: dict[str, Any] = {}
    if not node.body.get("keyed", False):
        bucket["key"] = _range_key(r, fld)
    if r.lo != float("-inf"):
        bucket["from"] = r.lo
        if r.lo_text is not None:
            bucket["from_as_string"] = r.lo_text
    if r.hi != float("inf"):
        bucket["to"] = r.hi
        if r.hi_text is not None:
            bucket["to_as_string"] = r.hi_text
    bucket["doc_count"] = len(hits)
    return _with_subs(node, bucket, hits, ctx)


@dataclass(frozen=True, slots=True)
class _Source:
    name: str
    field: Field
    desc: bool
    missing_bucket: bool
    missing_first: bool


def _composite_value(src: _Source, value: Value | None) -> Any:
    if value is None:
        return None
    if src.field.kind == "boolean":
        return bool(value)
    return value


def _composite_order(src: _Source, value: Any) -> tuple[int, Any]:
    if value is None:
        return (0 if src.missing_first else 2, "")
    if isinstance(value, str):
        return (1, _RevStr(value) if src.desc else value)
    return (1, -int(value) if src.desc else int(value))


def _composite(node: AggNode, docs: Sequence[Doc], ctx: _Ctx) -> tuple[dict[str, Any], str]:
    sources: list[_Source] = []
    for name, _, body in _sources(node):
        desc = str(body.get("order", "asc")).lower() == "desc"
        missing_order = str(body.get("missing_order", "default")).lower()
        first = missing_order == "first" or (missing_order == "default" and not desc)
        sources.append(
            _Source(name, _field_of(body), desc, bool(body.get("missing_bucket", False)), first)
        )
    groups: dict[tuple[Any, ...], list[Doc]] = {}
    for doc in docs:
        for combo in _combinations(sources, doc, ctx):
            groups.setdefault(combo, []).append(doc)

    def order(combo: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(_composite_order(s, v) for s, v in zip(sources, combo, strict=True))

    keys = sorted(groups, key=order)
    after = node.body.get("after")
    if after is not None:
        after_combo = _after_combo(node, sources, after, ctx)
        pivot = order(after_combo)
        keys = [k for k in keys if order(k) > pivot]
    keys = keys[: int(node.body.get("size", 10))]
    buckets = [
        _with_subs(
            node,
            {
                "key": {s.name: v for s, v in zip(sources, k, strict=True)},
                "doc_count": len(groups[k]),
            },
            groups[k],
            ctx,
        )
        for k in keys
    ]
    result: dict[str, Any] = {}
    if buckets:
        result["after_key"] = dict(buckets[-1]["key"])
    result["buckets"] = buckets
    return result, "composite"


def _combinations(sources: list[_Source], doc: Doc, ctx: _Ctx) -> list[tuple[Any, ...]]:
    combos: list[tuple[Any, ...]] = [()]
    for src in sources:
        values = [_composite_value(src, v) for v in src.field.values(doc, ctx.index)]
        if not values:
            if not src.missing_bucket:
                return []
            values = [None]
        combos = [(*c, v) for c in combos for v in dict.fromkeys(values)]
    return combos


def _after_combo(node: AggNode, sources: list[_Source], after: Any, ctx: _Ctx) -> tuple[Any, ...]:
    if not isinstance(after, Mapping):
        raise illegal_argument("[after] must be an object")
    if len(after) != len(sources):
        raise illegal_argument(
            f"[after] has {len(after)} value(s) but [sources] has {len(sources)}"
        )
    combo: list[Any] = []
    for src in sources:
        if src.name not in after:
            raise illegal_argument(f"Missing value for [after.{src.name}]")
        raw = after[src.name]
        if raw is None:
            combo.append(None)
        elif src.field.kind == "keyword":
            combo.append(_text(raw))
        elif src.field.kind == "boolean":
            combo.append(raw is True or _text(raw) == "true")
        else:
            value = _missing_value(src.field, raw, ctx)
            combo.append(value)
    return tuple(combo)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_Computer = Callable[[AggNode, Sequence[Doc], _Ctx], tuple[dict[str, Any], str]]
_COMPUTERS: dict[str, _Computer] = {
    "terms": _terms,
    "range": _ranges,
    "date_range": _ranges,
    "missing": _missing,
    "cardinality": _cardinality,
    "value_count": _value_count,
    "composite": _composite,
    "filter": _filter,
    "filters": _filters,
}
