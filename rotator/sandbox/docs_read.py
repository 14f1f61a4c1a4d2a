"""Reading and managing documents: get by id, a minimal search, count, refresh, create index.

The search emulates ``match_all`` and ``term`` queries, ``from``/``size``, and ``sort`` on
fields of the documents' sources.

Each is authorized on its index as Elasticsearch does (``indices:data/read/get``,
``indices:data/read/search``, ``indices:admin/refresh``, ``indices:admin/create``). Wildcard
expressions in search and count resolve to the indices the caller may read, silently dropping the
others, as ``IndexAbstractionResolver`` does for authorized wildcards.
"""

from __future__ import annotations

import re
from typing import Any

from rotator.sandbox.authn import authorize_index, principal_of
from rotator.sandbox.doc_ops import validate_index_name
from rotator.sandbox.documents import Index, is_data_stream
from rotator.sandbox.errors import EsError
from rotator.sandbox.http import Call, Response, Router
from rotator.sandbox.privileges import glob

GET_ACTION = "indices:data/read/get"
SEARCH_ACTION = "indices:data/read/search"
REFRESH_ACTION = "indices:admin/refresh"
CREATE_INDEX_ACTION = "indices:admin/create"
_SEARCH_SHARDS = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
_WORDS = re.compile(r"\w+")


def register(router: Router) -> None:
    """Register get-by-id, search, count, refresh and create-index."""
    router.add("GET", "/{index}/_doc/{id}", _get)
    for method in ("GET", "POST"):
        router.add(method, "/{index}/_search", _search)
        router.add(method, "/{index}/_count", _count)
        router.add(method, "/{index}/_refresh", _refresh)
    router.add("PUT", "/{index}", _create_index)


def _get(call: Call) -> Response:
    name, doc_id = call.request.path_params["index"], call.request.path_params["id"]
    authorize_index(call, GET_ACTION, name)
    index = call.state.docs.require(name)
    doc = index.docs.get(doc_id)
    if doc is None:
        return Response(404, {"_index": index.concrete, "_id": doc_id, "found": False})
    return Response(
        body={
            "_index": index.concrete,
            "_id": doc_id,
            "_version": doc.version,
            "_seq_no": doc.seq_no,
            "_primary_term": 1,
            "found": True,
            "_source": doc.source,
        }
    )


def _create_index(call: Call) -> Response:
    name = call.request.path_params["index"]
    call.request.json_object()
    validate_index_name(name)
    authorize_index(call, CREATE_INDEX_ACTION, name)
    if is_data_stream(name):
        prefix = name.split("-", 1)[0]
        raise EsError(
            400,
            "illegal_argument_exception",
            f"cannot create index with name [{name}], because it matches with template "
            f"[{prefix}] that creates data streams only, use create data stream api instead",
        )
    existing = call.state.docs.get(name)
    if existing is not None:
        raise EsError(
            400,
            "resource_already_exists_exception",
            f"index [{name}/{existing.uuid}] already exists",
            metadata={"index_uuid": existing.uuid, "index": name},
        )
    call.state.docs.create(name, call.now_ms)
    return Response(body={"acknowledged": True, "shards_acknowledged": True, "index": name})


def _refresh(call: Call) -> Response:
    names = _resolve(call, call.request.path_params["index"], REFRESH_ACTION)
    total = len(names)
    return Response(body={"_shards": {"total": 2 * total, "successful": total, "failed": 0}})


# --- search and count ----------------------------------------------------------------------------


def _resolve(call: Call, expression: str, action: str) -> list[Index]:
    """The indices an expression names, authorized for ``action``.

    Raises:
        EsError: 403 for a concrete name the caller may not use, 404 for a missing one.
    """
    principal = principal_of(call)
    store = call.state.docs
    found: dict[str, Index] = {}
    for part in expression.split(","):
        if part in ("_all", "*") or "*" in part:
            pattern = glob("*" if part == "_all" else part)
            for name, index in sorted(store.indices.items()):
                if pattern.matches(name) and principal.permission.allows_index_action(action, name):
                    found[name] = index
            continue
        authorize_index(call, action, part)
        found[part] = store.require(part)
    return list(found.values())


def _search(call: Call) -> Response:
    body = call.request.json_object()
    size, start = _int(body, "size", 10), _int(body, "from", 0)
    indices = _resolve(call, call.request.path_params["index"], SEARCH_ACTION)
    matcher = _query(body.get("query", {"match_all": {}}))
    hits = [
        {"_index": index.concrete, "_id": doc_id, "_score": 1.0, "_source": doc.source}
        for index in indices
        for doc_id, doc in index.docs.items()
        if matcher(doc.source)
    ]
    for field, descending in reversed(_sort(body.get("sort"))):
        hits = _sorted_by(hits, field, descending)
    return Response(
        body={
            "took": 1,
            "timed_out": False,
            "_shards": {**_SEARCH_SHARDS, "total": len(indices), "successful": len(indices)},
            "hits": {
                "total": {"value": len(hits), "relation": "eq"},
                "max_score": 1.0 if hits else None,
                "hits": hits[start : start + size],
            },
        }
    )


def _count(call: Call) -> Response:
    body = call.request.json_object()
    indices = _resolve(call, call.request.path_params["index"], SEARCH_ACTION)
    matcher = _query(body.get("query", {"match_all": {}}))
    count = sum(1 for index in indices for doc in index.docs.values() if matcher(doc.source))
    shards = {**_SEARCH_SHARDS, "total": len(indices), "successful": len(indices)}
    return Response(body={"count": count, "_shards": shards})


def _sort(raw: Any) -> list[tuple[str, bool]]:
    """The ``sort`` clauses as (field, descending): ``"f"``, ``{"f": "desc"}`` or
    ``{"f": {"order": "desc"}}``, alone or in a list.

    Raises:
        EsError: 400 for an order other than asc or desc, or a malformed clause.
    """
    if raw is None:
        return []
    out = []
    for item in raw if isinstance(raw, list) else [raw]:
        if isinstance(item, str):
            out.append((item, False))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise EsError(400, "illegal_argument_exception", "mal-formatted sort object")
        field, options = next(iter(item.items()))
        order = options.get("order", "asc") if isinstance(options, dict) else options
        if order not in ("asc", "desc"):
            raise EsError(400, "illegal_argument_exception", f"Unknown SortOrder [{order}]")
        out.append((str(field), order == "desc"))
    return out


def _sorted_by(hits: list[dict[str, Any]], field: str, descending: bool) -> list[dict[str, Any]]:
    """``hits`` ordered by the field's smallest (ascending) or largest (descending) value; a
    document without the field comes last either way, as Elasticsearch's default ``missing``."""
    if field in ("_doc", "_score"):
        return hits
    pick = max if descending else min
    keyed = []
    for hit in hits:
        values = [v for v in _values(hit["_source"], field) if isinstance(v, int | float | str)]
        keyed.append((pick(values, key=_sort_value) if values else None, hit))
    present = sorted(
        (k for k in keyed if k[0] is not None),
        key=lambda k: _sort_value(k[0]),
        reverse=descending,
    )
    return [hit for _, hit in present] + [hit for value, hit in keyed if value is None]


def _sort_value(value: Any) -> tuple[int, Any]:
    """Numbers before strings, so mixed values still compare."""
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def _int(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EsError(
            400,
            "illegal_argument_exception",
            f"[{name}] parameter cannot be negative, found [{value}]",
        )
    return value


Matcher = Any


def _query(query: Any) -> Matcher:
    """A predicate over sources for ``match_all`` and ``term`` (the emulated subset).

    Raises:
        EsError: 400 ``parsing_exception`` for any other query, naming it.
    """
    if not isinstance(query, dict) or len(query) != 1:
        raise EsError(
            400, "parsing_exception", "[_na] query malformed, no start_object after query name"
        )
    name, spec = next(iter(query.items()))
    if name == "match_all":
        return lambda _source: True
    if name == "term" and isinstance(spec, dict) and len(spec) == 1:
        field, wanted = next(iter(spec.items()))
        if isinstance(wanted, dict):
            wanted = wanted.get("value")
        return lambda source: _term_matches(source, str(field), wanted)
    raise EsError(
        400,
        "parsing_exception",
        f"the sandbox's _search emulates only [match_all] and [term] queries, not [{name}]",
    )


def _term_matches(source: dict[str, Any], field: str, wanted: Any) -> bool:
    """``term`` on dynamic mappings: ``x.keyword`` is exact, ``x`` (text) matches a token."""
    keyword = field.endswith(".keyword")
    values = _values(source, field.removesuffix(".keyword") if keyword else field)
    for value in values:
        if isinstance(value, str) and not keyword:
            if isinstance(wanted, str) and wanted in _WORDS.findall(value.lower()):
                return True
        elif value == wanted or (isinstance(value, str) and value == str(wanted)):
            return True
    return False


def _values(source: Any, path: str) -> list[Any]:
    """Every value at a dotted path (through objects and arrays)."""
    head, _, rest = path.partition(".")
    if isinstance(source, list):
        return [v for item in source for v in _values(item, path)]
    if not isinstance(source, dict):
        return []
    out = []
    if path in source:
        value = source[path]
        out.extend(value if isinstance(value, list) else [value])
    if rest and head in source:
        out.extend(_values(source[head], rest))
    return out
