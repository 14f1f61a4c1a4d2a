"""The query DSL subset of the Query API keys API: parsing into a tree, with ES's parser errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rotator.sandbox.query_errors import (
    illegal_argument,
    parsing,
    suggest,
    unknown_field,
    x_content,
)
from rotator.sandbox.roles import token as token_name

if TYPE_CHECKING:
    from rotator.sandbox.query_fields import FieldSet

__all__ = [
    "KNOWN_QUERIES",
    "QBool",
    "QExists",
    "QIds",
    "QMatch",
    "QMatchAll",
    "QNode",
    "QOther",
    "QPrefix",
    "QRange",
    "QSimple",
    "QTerm",
    "QTerms",
    "QWildcard",
    "parse_query",
    "token_name",
]

#: Query names Elasticsearch registers; those outside the subset parse, then get refused.
KNOWN_QUERIES = frozenset(
    {
        "bool",
        "boosting",
        "combined_fields",
        "constant_score",
        "dis_max",
        "distance_feature",
        "exists",
        "field_masking_span",
        "function_score",
        "fuzzy",
        "geo_bounding_box",
        "geo_distance",
        "geo_grid",
        "geo_shape",
        "has_child",
        "has_parent",
        "ids",
        "intervals",
        "knn",
        "match",
        "match_all",
        "match_bool_prefix",
        "match_none",
        "match_phrase",
        "match_phrase_prefix",
        "more_like_this",
        "multi_match",
        "nested",
        "parent_id",
        "percolate",
        "pinned",
        "prefix",
        "query_string",
        "range",
        "rank_feature",
        "regexp",
        "rule",
        "script",
        "script_score",
        "semantic",
        "shape",
        "simple_query_string",
        "span_containing",
        "span_first",
        "span_gap",
        "span_multi",
        "span_near",
        "span_not",
        "span_or",
        "span_term",
        "span_within",
        "sparse_vector",
        "term",
        "terms",
        "terms_set",
        "text_expansion",
        "weighted_tokens",
        "wildcard",
        "wrapper",
    }
)


@dataclass(frozen=True, slots=True)
class QMatchAll:
    """``match_all``."""


@dataclass(frozen=True, slots=True)
class QOther:
    """A query type Elasticsearch knows but the Query API keys API refuses."""

    name: str


@dataclass(frozen=True, slots=True)
class QIds:
    """``ids``."""

    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QTerm:
    """``term``."""

    field: str
    value: Any
    case_insensitive: bool = False


@dataclass(frozen=True, slots=True)
class QTerms:
    """``terms`` (``lookup`` when a terms lookup object was given)."""

    field: str
    values: tuple[Any, ...]
    lookup: bool = False


@dataclass(frozen=True, slots=True)
class QPrefix:
    """``prefix``."""

    field: str
    value: str
    case_insensitive: bool = False


@dataclass(frozen=True, slots=True)
class QWildcard:
    """``wildcard``."""

    field: str
    value: str
    case_insensitive: bool = False


@dataclass(frozen=True, slots=True)
class QExists:
    """``exists``."""

    field: str


@dataclass(frozen=True, slots=True)
class QRange:
    """``range``; ``lower``/``upper`` with their inclusiveness (``gt`` is an exclusive lower)."""

    field: str
    lower: Any = None
    upper: Any = None
    include_lower: bool = True
    include_upper: bool = True
    format: str | None = None
    time_zone: str | None = None
    relation: str | None = None


@dataclass(frozen=True, slots=True)
class QMatch:
    """``match`` (on keyword fields a single-token query)."""

    field: str
    query: Any
    fuzziness: Any = None
    lenient: bool = False
    zero_terms_all: bool = False


@dataclass(frozen=True, slots=True)
class QSimple:
    """``simple_query_string``; ``fields`` maps names or patterns to boosts."""

    query: str
    fields: tuple[str, ...]
    default_and: bool = False
    flags: int = -1
    lenient: bool | None = None
    minimum_should_match: str | None = None
    analyze_wildcard: bool = False


@dataclass(frozen=True, slots=True)
class QBool:
    """``bool``."""

    must: tuple[QNode, ...] = ()
    filter: tuple[QNode, ...] = ()
    should: tuple[QNode, ...] = ()
    must_not: tuple[QNode, ...] = ()
    minimum_should_match: str | None = None


QNode = (
    QMatchAll
    | QOther
    | QIds
    | QTerm
    | QTerms
    | QPrefix
    | QWildcard
    | QExists
    | QRange
    | QMatch
    | QSimple
    | QBool
)


def _is_value(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bool(value: Any, query: str, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise parsing(
        f"[{query}] failed to parse [{key}]: Failed to parse value [{_text(value)}] as only "
        "[true] or [false] are allowed."
    )


def parse_query(obj: Any) -> QNode:
    """Parse one query clause (``{"term": {...}}``), as ``parseInnerQueryBuilder`` does.

    Raises:
        QueryError: ``parsing_exception`` (or the errors of the clause's own parser).
    """
    if not isinstance(obj, Mapping):
        raise parsing("[_na] query malformed, must start with start_object")
    if not obj:
        raise illegal_argument("query malformed, empty clause found")
    items = list(obj.items())
    name, body = items[0]
    if not isinstance(body, Mapping):
        raise parsing(
            f"[{name}] query malformed, no start_object after query name",
            where=(obj, name, "value"),
        )
    parser = _PARSERS.get(name)
    if parser is None:
        if name not in KNOWN_QUERIES:
            raise parsing(
                f"unknown query [{name}]{suggest(name, KNOWN_QUERIES)}", where=(obj, name, "value")
            )
        node: QNode = QOther(name)
    else:
        node = parser(body)
    if len(items) > 1:
        raise parsing(f"[{name}] malformed query, expected [END_OBJECT] but found [FIELD_NAME]")
    return node


def _single_field(query: str, body: Mapping[str, Any]) -> tuple[str, Any]:
    field: str | None = None
    for key in body:
        if field is not None:
            raise parsing(
                f"[{query}] query doesn't support multiple fields, found [{field}] and [{key}]"
            )
        field = key
    if field is None:
        raise illegal_argument("field name is null or empty")
    return field, body[field]


def _options(query: str, value: Any, allowed: dict[str, str], shorthand: str) -> dict[str, Any]:
    """Read the per-field options object of a single-field query (or its shorthand value)."""
    if isinstance(value, list):
        raise parsing(f"[{query}] query does not support array of values")
    if not isinstance(value, Mapping):
        return {shorthand: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        canonical = allowed.get(key)
        if canonical is None or not (_is_value(item) or canonical == "_object"):
            raise parsing(f"[{query}] query does not support [{key}]", where=(value, key, "value"))
        out[canonical] = item
    return out


_COMMON = {"boost": "boost", "_name": "_name"}


def _parse_term(body: Mapping[str, Any]) -> QNode:
    field, raw = _single_field("term", body)
    opts = _options(
        "term", raw, {**_COMMON, "value": "value", "case_insensitive": "case_insensitive"}, "value"
    )
    if opts.get("value") is None:
        raise illegal_argument("value cannot be null")
    ci = _bool(opts.get("case_insensitive", False), "term", "case_insensitive")
    return QTerm(field, opts["value"], ci)


def _parse_prefix_like(query: str, body: Mapping[str, Any]) -> tuple[str, str, bool]:
    field, raw = _single_field(query, body)
    allowed = {
        **_COMMON,
        "value": "value",
        query: "value",
        "rewrite": "rewrite",
        "case_insensitive": "case_insensitive",
    }
    opts = _options(query, raw, allowed, "value")
    if opts.get("value") is None:
        raise illegal_argument(
            "value cannot be null" if query == "prefix" else "wildcard cannot be null"
        )
    ci = _bool(opts.get("case_insensitive", False), query, "case_insensitive")
    return field, _text(opts["value"]), ci


def _parse_prefix(body: Mapping[str, Any]) -> QNode:
    return QPrefix(*_parse_prefix_like("prefix", body))


def _parse_wildcard(body: Mapping[str, Any]) -> QNode:
    return QWildcard(*_parse_prefix_like("wildcard", body))


def _parse_terms(body: Mapping[str, Any]) -> QNode:
    field: str | None = None
    values: tuple[Any, ...] = ()
    lookup = False
    for key, value in body.items():
        if key in _COMMON:
            continue
        if isinstance(value, list | Mapping):
            if field is not None:
                raise parsing(
                    f"[terms] query does not support multiple fields, found [{field}] and [{key}]"
                )
            field = key
            lookup = isinstance(value, Mapping)
            values = () if lookup else tuple(value)
            if any(v is None for v in values):
                raise illegal_argument("No value specified for terms query")
        else:
            raise parsing(f"[terms] query does not support [{key}]")
    if field is None:
        raise parsing(
            "[terms] query requires a field name, followed by array of terms or a document "
            "lookup specification"
        )
    return QTerms(field, values, lookup)


def _parse_exists(body: Mapping[str, Any]) -> QNode:
    field = None
    for key, value in body.items():
        if key == "field" and _is_value(value):
            field = value
        elif key not in _COMMON:
            raise parsing(f"[exists] query does not support [{key}]")
    if field is None:
        raise parsing("[exists] must be provided with a [field]")
    return QExists(_text(field))


_RANGE_KEYS = {
    **_COMMON,
    "from": "from",
    "to": "to",
    "include_lower": "include_lower",
    "include_upper": "include_upper",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
    "format": "format",
    "time_zone": "time_zone",
    "relation": "relation",
}


def _parse_range(body: Mapping[str, Any]) -> QNode:
    field, raw = _single_field("range", body)
    if not isinstance(raw, Mapping):
        raise parsing(f"[range] query does not support [{field}]")
    opts = _options("range", raw, _RANGE_KEYS, "from")
    lower, upper = opts.get("from"), opts.get("to")
    inc_lower = _bool(opts.get("include_lower", True), "range", "include_lower")
    inc_upper = _bool(opts.get("include_upper", True), "range", "include_upper")
    for key in ("gt", "gte"):
        if key in opts:
            lower, inc_lower = opts[key], key == "gte"
    for key in ("lt", "lte"):
        if key in opts:
            upper, inc_upper = opts[key], key == "lte"
    fmt = opts.get("format")
    zone = opts.get("time_zone")
    relation = opts.get("relation")
    return QRange(
        field,
        lower,
        upper,
        inc_lower,
        inc_upper,
        None if fmt is None else _text(fmt),
        None if zone is None else _text(zone),
        None if relation is None else _text(relation),
    )


_MATCH_KEYS = {
    **_COMMON,
    "query": "query",
    "operator": "operator",
    "analyzer": "analyzer",
    "fuzziness": "fuzziness",
    "prefix_length": "prefix_length",
    "max_expansions": "max_expansions",
    "minimum_should_match": "minimum_should_match",
    "fuzzy_rewrite": "fuzzy_rewrite",
    "fuzzy_transpositions": "fuzzy_transpositions",
    "lenient": "lenient",
    "zero_terms_query": "zero_terms_query",
    "auto_generate_synonyms_phrase_query": "auto_generate_synonyms_phrase_query",
}


def _parse_match(body: Mapping[str, Any]) -> QNode:
    field, raw = _single_field("match", body)
    opts = _options("match", raw, _MATCH_KEYS, "query")
    if opts.get("query") is None:
        raise illegal_argument("[match] requires query value")
    zero = _text(opts.get("zero_terms_query", "none")).lower()
    if zero not in ("none", "all"):
        raise parsing(f"Unsupported zero_terms_query value [{zero}]")
    operator = _text(opts.get("operator", "or")).lower()
    if operator not in ("or", "and"):
        raise illegal_argument(f"No enum constant for operator [{operator}]")
    lenient = _bool(opts.get("lenient", False), "match", "lenient")
    return QMatch(field, opts["query"], opts.get("fuzziness"), lenient, zero == "all")


_SQS_KEYS = frozenset(
    {
        "query",
        "fields",
        "default_operator",
        "analyzer",
        "flags",
        "lenient",
        "analyze_wildcard",
        "minimum_should_match",
        "quote_field_suffix",
        "auto_generate_synonyms_phrase_query",
        "fuzzy_prefix_length",
        "fuzzy_max_expansions",
        "fuzzy_transpositions",
        "boost",
        "_name",
    }
)
_SQS_FLAGS = {
    "NONE": 0,
    "AND": 1,
    "NOT": 2,
    "OR": 4,
    "PREFIX": 8,
    "PHRASE": 16,
    "PRECEDENCE": 32,
    "ESCAPE": 64,
    "WHITESPACE": 128,
    "FUZZY": 256,
    "NEAR": 512,
    "SLOP": 512,
    "ALL": -1,
}


def _sqs_flags(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    value = 0
    for part in _text(raw).split("|"):
        name = part.strip().upper()
        if not name:
            continue
        if name not in _SQS_FLAGS:
            raise illegal_argument(f"Unknown simple_query_string flag [{part.strip()}]")
        flag = _SQS_FLAGS[name]
        if flag == -1:
            return -1
        value |= flag
    return value


def _parse_simple(body: Mapping[str, Any]) -> QNode:
    for key, value in body.items():
        if key not in _SQS_KEYS or (key != "fields" and not _is_value(value)):
            raise parsing(f"[simple_query_string] unsupported field [{key}]")
    if body.get("query") is None:
        raise parsing("[simple_query_string] query text missing")
    fields_raw = body.get("fields", [])
    if not isinstance(fields_raw, list):
        raise parsing("[simple_query_string] unsupported field [fields]")
    fields = tuple(_text(f).split("^", 1)[0] for f in fields_raw)
    operator = _text(body.get("default_operator", "or")).lower()
    if operator not in ("or", "and"):
        raise parsing(f"[simple_query_string] default operator [{operator}] is not allowed")
    lenient = body.get("lenient")
    msm = body.get("minimum_should_match")
    return QSimple(
        _text(body["query"]),
        fields,
        operator == "and",
        _sqs_flags(body.get("flags", -1)),
        None if lenient is None else _bool(lenient, "simple_query_string", "lenient"),
        None if msm is None else _text(msm),
        _bool(body.get("analyze_wildcard", False), "simple_query_string", "analyze_wildcard"),
    )


def _parse_ids(body: Mapping[str, Any]) -> QNode:
    values: tuple[str, ...] = ()
    for key, value in body.items():
        if key == "values":
            if not isinstance(value, list):
                raise x_content(f"[ids] values doesn't support values of type: {token_name(value)}")
            values = tuple(_text(v) for v in value)
        elif key not in _COMMON:
            raise unknown_field("ids", key, ["values", "boost", "_name"])
    return QIds(values)


def _parse_match_all(body: Mapping[str, Any]) -> QNode:
    for key in body:
        if key not in _COMMON:
            raise unknown_field("match_all", key, ["boost", "_name"])
    return QMatchAll()


_BOOL_CLAUSES = ("must", "filter", "should", "must_not")


def _parse_bool(body: Mapping[str, Any]) -> QNode:
    clauses: dict[str, list[QNode]] = {k: [] for k in _BOOL_CLAUSES}
    msm: str | None = None
    for key, value in body.items():
        if key in clauses:
            items = value if isinstance(value, list) else [value]
            for item in items:
                if not isinstance(item, Mapping):
                    raise parsing(
                        f"[bool] query does not support [{key}]", where=(body, key, "value")
                    )
                clauses[key].append(parse_query(item))
        elif key == "minimum_should_match" and _is_value(value):
            msm = None if value is None else _text(value)
        elif key in ("boost", "_name", "adjust_pure_negative") and _is_value(value):
            continue
        else:
            raise parsing(f"[bool] query does not support [{key}]", where=(body, key, "value"))
    return QBool(
        tuple(clauses["must"]),
        tuple(clauses["filter"]),
        tuple(clauses["should"]),
        tuple(clauses["must_not"]),
        msm,
    )


_PARSERS = {
    "bool": _parse_bool,
    "match_all": _parse_match_all,
    "ids": _parse_ids,
    "term": _parse_term,
    "terms": _parse_terms,
    "prefix": _parse_prefix,
    "wildcard": _parse_wildcard,
    "exists": _parse_exists,
    "range": _parse_range,
    "match": _parse_match,
    "simple_query_string": _parse_simple,
}


def check_query(node: QNode, fields: FieldSet) -> None:
    """Refuse what ``FieldNameTranslators.translateQueryBuilderFields`` refuses.

    Raises:
        QueryError: ``illegal_argument_exception`` for unsupported query types, terms lookups,
            range relations and fields that may not be queried.
    """
    if isinstance(node, QBool):
        for clause in (*node.must, *node.should, *node.must_not, *node.filter):
            check_query(clause, fields)
    elif isinstance(node, QOther):
        raise illegal_argument(
            f"Query type [{node.name}] is not currently supported in this context"
        )
    elif isinstance(node, QTerms) and node.lookup:
        raise illegal_argument(
            "terms query with terms lookup is not currently supported in this context"
        )
    elif isinstance(node, QRange) and node.relation is not None:
        raise illegal_argument(
            "range query with relation is not currently supported in this context"
        )
    elif isinstance(node, QTerm | QTerms | QPrefix | QWildcard | QExists | QRange | QMatch):
        fields.translate(node.field)
