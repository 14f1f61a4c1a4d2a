"""Document writes over HTTP: single documents and ``_bulk``, authorized as Elasticsearch does.

``_bulk`` and the single-document index and delete requests are composite requests: ES first
authorizes their action by name (``RBACEngine.shouldAuthorizeIndexActionNameOnly``), refusing the
whole request with 403 when no index privilege grants it anywhere; each item is then authorized
on its own index (``indices:data/write/index:op_type/create|index``, ``.../update``,
``.../delete``), and an item refused there fails alone.
"""

from __future__ import annotations

import json
from typing import Any

from rotator.sandbox import doc_ops, docs_read
from rotator.sandbox.authn import authorize_index_action_name
from rotator.sandbox.errors import EsError, validation_failed
from rotator.sandbox.http import Call, Response, Router, parse_json

BULK_ACTION = "indices:data/write/bulk"
INDEX_REQUEST_ACTION = "indices:data/write/index"
DELETE_REQUEST_ACTION = "indices:data/write/delete"
_SOURCE_OPS = ("create", "index", "update")


def register(router: Router) -> None:
    """Register the document endpoints."""
    router.add("POST", "/{index}/_doc", _index_auto_id)
    for method in ("PUT", "POST"):
        router.add(method, "/{index}/_doc/{id}", _index_with_id)
        router.add(method, "/{index}/_create/{id}", _create_with_id)
        router.add(method, "/_bulk", _bulk)
        router.add(method, "/{index}/_bulk", _bulk)
    router.add("DELETE", "/{index}/_doc/{id}", _delete)
    router.add("POST", "/{index}/_update/{id}", _update)
    docs_read.register(router)


# --- single documents ----------------------------------------------------------------------------


def _index_auto_id(call: Call) -> Response:
    # With a generated id, Elasticsearch authorizes the request as op_type create.
    return _single(call, None, call.request.params.get("op_type", "create"))


def _index_with_id(call: Call) -> Response:
    return _single(
        call, call.request.path_params["id"], call.request.params.get("op_type", "index")
    )


def _create_with_id(call: Call) -> Response:
    return _single(call, call.request.path_params["id"], "create")


def _single(call: Call, doc_id: str | None, op_type: str) -> Response:
    source = call.request.json(required=True)
    authorize_index_action_name(call, INDEX_REQUEST_ACTION)
    text = call.request.body.decode("utf-8", "replace")
    body, status = doc_ops.write(
        call, call.request.path_params["index"], doc_id, op_type, source, text
    )
    return Response(status, body)


def _update(call: Call) -> Response:
    body = call.request.json_object(required=True)
    unknown = [k for k in body if k not in doc_ops.UPDATE_FIELDS]
    if unknown:
        raise EsError(
            400, "x_content_parse_exception", f"[1:2] [UpdateRequest] unknown field [{unknown[0]}]"
        )
    if body.get("doc") is None and body.get("script") is None:
        raise validation_failed("script or doc is missing")
    text = call.request.body.decode("utf-8", "replace")
    result, status = doc_ops.update(
        call, call.request.path_params["index"], call.request.path_params["id"], body, text
    )
    return Response(status, result)


def _delete(call: Call) -> Response:
    authorize_index_action_name(call, DELETE_REQUEST_ACTION)
    result, status = doc_ops.delete(
        call, call.request.path_params["index"], call.request.path_params["id"]
    )
    return Response(status, result)


# --- bulk ----------------------------------------------------------------------------------------


class _Item:
    """One bulk operation: its action line and (for create, index, update) its source line."""

    def __init__(self, op: str, meta: dict[str, Any], default_index: str | None) -> None:
        self.op = op
        self.index: str | None = meta.get("_index", default_index)
        self.doc_id: str | None = None if meta.get("_id") is None else str(meta["_id"])
        self.source: Any = None
        self.text = ""

    def problems(self) -> list[str]:
        """The request validation messages of this item (``BulkRequest.validate``)."""
        out = []
        if self.index is None:
            out.append("index is missing")
        if self.op in ("update", "delete") and self.doc_id is None:
            out.append("id is missing")
        if self.op == "update":
            body = self.source if isinstance(self.source, dict) else {}
            if body.get("doc") is None and body.get("script") is None:
                out.append("script or doc is missing")
        return out


def _bulk(call: Call) -> Response:
    items = _parse_bulk(call.request.body.decode("utf-8", "replace"), call)
    problems = [p for item in items for p in item.problems()]
    if not items:
        problems.insert(0, "no requests added")
    if problems:
        raise validation_failed(*problems)
    authorize_index_action_name(call, BULK_ACTION)
    results = [{item.op: _run(call, item)} for item in items]
    errors = any("error" in next(iter(r.values())) for r in results)
    return Response(body={"errors": errors, "took": 1, "items": results})


def _parse_bulk(text: str, call: Call) -> list[_Item]:
    lines = [line for line in text.split("\n") if line.strip()]
    default_index = call.request.path_params.get("index")
    items: list[_Item] = []
    position = 0
    while position < len(lines):
        op, meta = _bulk_action(lines[position], position)
        item = _Item(op, meta, default_index)
        position += 1
        if op in _SOURCE_OPS:
            if position >= len(lines):
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    "The bulk request must be terminated by a newline [\\n]",
                )
            item.text = lines[position]
            item.source = parse_json(item.text)
            position += 1
        items.append(item)
    return items


def _bulk_action(line: str, position: int) -> tuple[str, dict[str, Any]]:
    try:
        action = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        raise EsError(
            400,
            "x_content_parse_exception",
            f"[1:1] Malformed action/metadata line [{position + 1}]",
        ) from None
    if not isinstance(action, dict) or len(action) != 1:
        raise EsError(
            400,
            "illegal_argument_exception",
            f"Malformed action/metadata line [{position + 1}], expected a simple value for field "
            "[_index] but found [START_OBJECT]",
        )
    op, meta = next(iter(action.items()))
    if op not in ("create", "index", "update", "delete"):
        raise EsError(
            400,
            "illegal_argument_exception",
            f"Malformed action/metadata line [{position + 1}], expected one of [create, delete, "
            f"index, update] but found [{op}]",
        )
    return op, meta if isinstance(meta, dict) else {}


def _run(call: Call, item: _Item) -> dict[str, Any]:
    index = item.index
    assert index is not None
    try:
        if item.op in ("create", "index"):
            body, status = doc_ops.write(call, index, item.doc_id, item.op, item.source, item.text)
        elif item.op == "update":
            assert item.doc_id is not None
            body, status = doc_ops.update(call, index, item.doc_id, item.source, item.text)
        else:
            assert item.doc_id is not None
            body, status = doc_ops.delete(call, index, item.doc_id)
    except EsError as error:
        return {
            "_index": index,
            "_id": item.doc_id,
            "status": error.status,
            "error": error.as_object(),
        }
    return {**body, "status": status}
