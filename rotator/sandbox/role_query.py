"""Document-level security queries of roles, validated as ``DLSRoleQueryValidator`` does.

Elasticsearch parses each ``indices[].query`` of a role it stores; a query it cannot parse, or one
that a role query may not use (``terms`` with a terms lookup, ``geo_shape`` on an indexed shape,
``percolate``, ``has_child``, ``has_parent``, also inside ``bool``, ``constant_score``,
``function_score`` and ``boosting``), is refused with 400 ``parse_exception`` ("failed to parse
field 'query' for indices [...] at index privilege [i] of role descriptor"). Template queries
(``{"template": ...}``) are not checked until they are used.
"""

from __future__ import annotations

import json
from typing import Any

from rotator.sandbox.errors import EsError
from rotator.sandbox.query_errors import suggest
from rotator.sandbox.roles import RoleDescriptor

# The query names of Elasticsearch 8.17's SearchModule and its bundled plugins.
KNOWN_QUERIES = frozenset(
    [
        "match_all",
        "match_none",
        "match",
        "match_phrase",
        "match_phrase_prefix",
        "match_bool_prefix",
        "multi_match",
        "combined_fields",
        "query_string",
        "simple_query_string",
        "term",
        "terms",
        "terms_set",
        "range",
        "exists",
        "prefix",
        "wildcard",
        "regexp",
        "fuzzy",
        "ids",
        "bool",
        "boosting",
        "constant_score",
        "dis_max",
        "function_score",
        "script_score",
        "nested",
        "has_child",
        "has_parent",
        "parent_id",
        "geo_shape",
        "geo_bounding_box",
        "geo_distance",
        "geo_polygon",
        "geo_grid",
        "shape",
        "more_like_this",
        "script",
        "percolate",
        "wrapper",
        "span_term",
        "span_first",
        "span_near",
        "span_not",
        "span_or",
        "span_containing",
        "span_within",
        "span_multi",
        "field_masking_span",
        "span_field_masking",
        "intervals",
        "distance_feature",
        "rank_feature",
        "pinned",
        "rule",
        "knn",
        "sparse_vector",
        "text_expansion",
        "weighted_tokens",
        "semantic",
    ]
)
_FORBIDDEN = {
    "percolate": "percolate query isn't supported as part of a role query",
    "has_child": "has_child query isn't supported as part of a role query",
    "has_parent": "has_parent query isn't supported as part of a role query",
}


def check_role_queries(descriptor: RoleDescriptor) -> None:
    """Refuse the first ``indices`` entry whose query ES would not store.

    Raises:
        EsError: 400 ``parse_exception`` with the cause as ``caused_by``.
    """
    for position, entry in enumerate(descriptor.indices):
        if entry.query is None:
            continue
        cause = _query_problem(entry.query)
        if cause is not None:
            raise EsError(
                400,
                "parse_exception",
                f"failed to parse field 'query' for indices [{','.join(entry.names)}] at index "
                f"privilege [{position}] of role descriptor",
                caused_by=cause,
            )


def _query_problem(text: str) -> dict[str, Any] | None:
    try:
        query = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return {"type": "x_content_parse_exception", "reason": "[1:1] malformed query"}
    if isinstance(query, dict) and "template" in query:
        return None
    try:
        _verify(query)
    except ValueError as exc:
        return {"type": "illegal_argument_exception", "reason": str(exc)}
    except LookupError as exc:
        return {"type": "parsing_exception", "reason": str(exc.args[0])}
    return None


def _verify(query: Any) -> None:
    if not isinstance(query, dict) or len(query) != 1:
        raise LookupError("[_na] query malformed, must start with start_object")
    name, body = next(iter(query.items()))
    if name not in KNOWN_QUERIES:
        raise LookupError(f"unknown query [{name}]{suggest(name, KNOWN_QUERIES)}")
    if name in _FORBIDDEN:
        raise ValueError(_FORBIDDEN[name])
    if not isinstance(body, dict):
        return
    if name == "terms" and any(isinstance(v, dict) for k, v in body.items() if k != "boost"):
        raise ValueError("terms query with terms lookup isn't supported as part of a role query")
    if name == "geo_shape" and any(
        isinstance(v, dict) and "indexed_shape" in v for v in body.values()
    ):
        raise ValueError(
            "geoshape query referring to indexed shapes isn't supported as part of a role query"
        )
    for inner in _children(name, body):
        _verify(inner)


def _children(name: str, body: dict[str, Any]) -> list[Any]:
    if name == "bool":
        out: list[Any] = []
        for clause in ("filter", "must", "must_not", "should"):
            value = body.get(clause)
            out.extend(value if isinstance(value, list) else [value] if value else [])
        return out
    if name == "constant_score":
        return [body["filter"]] if "filter" in body else []
    if name == "function_score":
        return [body["query"]] if "query" in body else []
    if name == "boosting":
        return [body[k] for k in ("negative", "positive") if k in body]
    return []
