"""Document ingestion and counting, authorized by index privileges: a key proves it can ship."""

from __future__ import annotations

import base64
import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from rotator.sandbox.errors import EsError
from rotator.sandbox.http import Call, Response, Router

# Index names that Elasticsearch's built-in templates turn into data streams.
DATA_STREAM_PATTERN = re.compile(r"^(logs|metrics|traces|synthetics)-.+-.+$")
CREATE_ACTION = "indices:data/write/index:op_type/create"
INDEX_ACTION = "indices:data/write/index:op_type/index"
AUTO_CREATE_ACTION = "indices:admin/auto_create"
SEARCH_ACTION = "indices:data/read/search"
BULK_ACTION = "indices:data/write/bulk"
_INVALID_CHARS = set('\\/*?"<>| ,#:')
_INVALID_LIST = "['\\\\', '/', '*', '?', '\"', '<', '>', '|', ' ', ',', '#', ':']"
_SHARDS = {"total": 2, "successful": 1, "failed": 0}


def register(router: Router) -> None:
    """Register the ingestion endpoints."""
    router.add("POST", "/{index}/_doc", _index_auto_id)
    router.add("PUT", "/{index}/_doc/{id}", _index_with_id)
    router.add("POST", "/{index}/_doc/{id}", _index_with_id)
    router.add("PUT", "/{index}/_create/{id}", _create_with_id)
    router.add("POST", "/{index}/_create/{id}", _create_with_id)
    router.add("POST", "/_bulk", _bulk)
    router.add("PUT", "/_bulk", _bulk)
    router.add("POST", "/{index}/_bulk", _bulk)
    router.add("PUT", "/{index}/_bulk", _bulk)
    router.add("GET", "/{index}/_count", _count)
    router.add("POST", "/{index}/_count", _count)


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
    if not isinstance(source, dict):
        raise EsError(400, "mapper_parsing_exception", "failed to parse")
    result = _write(call, call.request.path_params["index"], doc_id, op_type)
    if isinstance(result, EsError):
        raise result
    return Response(201, result)


def _write(call: Call, index: str, doc_id: str | None, op_type: str) -> dict[str, Any] | EsError:
    """Authorize and count one document; returns the item result or the error for it."""
    try:
        _validate_index_name(index)
        if op_type not in ("create", "index"):
            raise EsError(400, "illegal_argument_exception", f"opType [{op_type}] not allowed")
        stream = bool(DATA_STREAM_PATTERN.match(index))
        if stream and op_type != "create":
            raise EsError(
                400,
                "illegal_argument_exception",
                "only write ops with an op_type of create are allowed in data streams",
            )
        action = CREATE_ACTION if op_type == "create" else INDEX_ACTION
        _authorize_index(call, action, index)
        if index not in call.state.documents:
            _authorize_index(call, AUTO_CREATE_ACTION, index)
        return _store(call, index, doc_id, op_type, stream)
    except EsError as error:
        return error


def _store(
    call: Call, index: str, doc_id: str | None, op_type: str, stream: bool
) -> dict[str, Any]:
    ids = call.state.document_ids.setdefault(index, set())
    version = 1
    if doc_id is not None and doc_id in ids:
        if op_type == "create":
            raise EsError(
                409,
                "version_conflict_engine_exception",
                f"[{doc_id}]: version conflict, document already exists (current version [1])",
                metadata={"index_uuid": "sandbox", "shard": "0", "index": _concrete(call, index)},
            )
        version = 2
    if index not in call.state.documents:
        call.state.created_at_ms[index] = call.now_ms
    doc_id = doc_id or _new_id()
    if version == 1:
        call.state.documents[index] += 1
    ids.add(doc_id)
    seq_no = call.state.documents[index] - 1
    return {
        "_index": _concrete(call, index) if stream else index,
        "_id": doc_id,
        "_version": version,
        "result": "created" if version == 1 else "updated",
        "_shards": _SHARDS,
        "_seq_no": seq_no,
        "_primary_term": 1,
    }


def _concrete(call: Call, index: str) -> str:
    if not DATA_STREAM_PATTERN.match(index):
        return index
    created = datetime.fromtimestamp(call.state.created_at_ms.get(index, call.now_ms) / 1000, UTC)
    return f".ds-{index}-{created:%Y.%m.%d}-000001"


def _new_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(15)).decode().rstrip("=")


def _validate_index_name(index: str) -> None:
    reason = None
    if index != index.lower():
        reason = "must be lowercase"
    elif index.startswith(("_", "-", "+")):
        reason = "must not start with '_', '-', or '+'"
    elif index in (".", ".."):
        reason = "must not be '.' or '..'"
    elif any(ch in _INVALID_CHARS for ch in index):
        reason = "must not contain the following characters " + _INVALID_LIST
    if reason:
        raise EsError(
            400,
            "invalid_index_name_exception",
            f"Invalid index name [{index}], {reason}",
            metadata={"index_uuid": "_na_", "index": index},
        )


def _authorize_index(call: Call, action: str, index: str) -> None:
    from rotator.sandbox.authn import authorize_index

    authorize_index(call, action, index)


# --- bulk ----------------------------------------------------------------------------------------


def _bulk(call: Call) -> Response:
    default_index = call.request.path_params.get("index")
    lines = [
        line for line in call.request.body.decode("utf-8", "replace").split("\n") if line.strip()
    ]
    if not lines:
        raise EsError(
            400, "action_request_validation_exception", "Validation Failed: 1: no requests added;"
        )
    items = []
    position = 0
    while position < len(lines):
        op, meta = _bulk_action(lines[position], position)
        position += 1
        if op in ("create", "index", "update"):
            if position >= len(lines):
                raise EsError(
                    400,
                    "illegal_argument_exception",
                    "The bulk request must be terminated by a newline [\\n]",
                )
            position += 1
        items.append({op: _bulk_item(call, op, meta, default_index)})
    errors = any("error" in next(iter(item.values())) for item in items)
    return Response(body={"errors": errors, "took": 1, "items": items})


def _bulk_action(line: str, position: int) -> tuple[str, dict[str, Any]]:
    try:
        action = json.loads(line)
    except json.JSONDecodeError:
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


def _bulk_item(call: Call, op: str, meta: dict[str, Any], default: str | None) -> dict[str, Any]:
    index = meta.get("_index", default)
    doc_id = meta.get("_id")
    if index is None:
        error = EsError(
            400, "action_request_validation_exception", "Validation Failed: 1: index is missing;"
        )
        return {"_index": None, "_id": doc_id, "status": 400, "error": error.as_object()}
    if op not in ("create", "index"):
        error = EsError(
            400, "illegal_argument_exception", f"the sandbox does not emulate bulk [{op}]"
        )
        return {"_index": index, "_id": doc_id, "status": 400, "error": error.as_object()}
    result = _write(call, index, doc_id, op)
    if isinstance(result, EsError):
        return {
            "_index": index,
            "_id": doc_id,
            "status": result.status,
            "error": result.as_object(),
        }
    return {**result, "status": 201}


# --- count ---------------------------------------------------------------------------------------


def _count(call: Call) -> Response:
    index = call.request.path_params["index"]
    _authorize_index(call, SEARCH_ACTION, index)
    if index not in call.state.documents:
        raise EsError(
            404,
            "index_not_found_exception",
            f"no such index [{index}]",
            metadata={
                "resource.type": "index_or_alias",
                "resource.id": index,
                "index_uuid": "_na_",
                "index": index,
            },
        )
    return Response(
        body={
            "count": call.state.documents[index],
            "_shards": {**_SHARDS, "total": 1, "skipped": 0},
        }
    )
