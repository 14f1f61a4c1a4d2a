"""Single-document operations (create, index, update, delete) as Elasticsearch authorizes them.

Order per operation, as in ``TransportBulkAction`` and ``AuthorizationService``: the index name is
validated; a missing index is auto-created (``indices:admin/auto_create`` on it); a data stream
takes only ``create``; then the operation's own action is authorized on the index (the item-level
check of ``BulkShardRequest``), and only then is the document parsed and stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rotator.sandbox.authn import authorize_index
from rotator.sandbox.documents import (
    Doc,
    Index,
    index_not_found,
    is_data_stream,
    new_id,
    write_result,
)
from rotator.sandbox.errors import EsError
from rotator.sandbox.http import Call

CREATE_ACTION = "indices:data/write/index:op_type/create"
INDEX_ACTION = "indices:data/write/index:op_type/index"
UPDATE_ACTION = "indices:data/write/update"
DELETE_ACTION = "indices:data/write/delete"
AUTO_CREATE_ACTION = "indices:admin/auto_create"
ITEM_ACTIONS = {
    "create": CREATE_ACTION,
    "index": INDEX_ACTION,
    "update": UPDATE_ACTION,
    "delete": DELETE_ACTION,
}
# The data streams whose built-in template has a default pipeline that sets @timestamp when it
# is missing (logs@settings.json: default_pipeline logs@default-pipeline, a `set` processor
# copying _ingest.timestamp). metrics@settings.json has no default pipeline.
TIMESTAMP_PIPELINE_PREFIXES = ("logs-",)
_INVALID_CHARS = set('\\/*?"<>| ,#:')
_INVALID_LIST = "['\\\\', '/', '*', '?', '\"', '<', '>', '|', ' ', ',', '#', ':']"
_NOOP_SHARDS = {"total": 0, "successful": 0, "failed": 0}
UPDATE_FIELDS = ("doc", "upsert", "doc_as_upsert", "detect_noop", "script", "scripted_upsert")


def validate_index_name(index: str) -> None:
    """``MetadataCreateIndexService.validateIndexOrAliasName``'s rules and texts.

    Raises:
        EsError: 400 ``invalid_index_name_exception``.
    """
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


def _target(call: Call, index: str, op: str, *, auto_create: bool = True) -> Index | None:
    """Validate, auto-create when allowed, refuse non-create ops on data streams."""
    validate_index_name(index)
    target = call.state.docs.get(index)
    if target is None and auto_create:
        authorize_index(call, AUTO_CREATE_ACTION, index)
        target = call.state.docs.create(index, call.now_ms)
    if is_data_stream(index) and op != "create":
        raise EsError(
            400,
            "illegal_argument_exception",
            "only write ops with an op_type of create are allowed in data streams",
        )
    return target


def write(
    call: Call, index: str, doc_id: str | None, op_type: str, source: Any, text: str
) -> tuple[dict[str, Any], int]:
    """Create or index one document; returns the item body and its status.

    Args:
        call: the request.
        index: the target index or data stream.
        doc_id: the id, or None for a generated one.
        op_type: ``create`` or ``index``.
        source: the parsed document.
        text: the document's JSON text (for error locations).

    Raises:
        EsError: what Elasticsearch answers for this item.
    """
    if op_type not in ("create", "index"):
        raise EsError(400, "illegal_argument_exception", f"opType [{op_type}] not allowed")
    target = _target(call, index, op_type)
    assert target is not None
    authorize_index(call, ITEM_ACTIONS[op_type], index)
    source = _parse_document(target.name, source, text, call.now_ms)
    doc_id = doc_id if doc_id is not None else new_id()
    existing = target.docs.get(doc_id)
    if existing is not None and op_type == "create":
        raise EsError(
            409,
            "version_conflict_engine_exception",
            f"[{doc_id}]: version conflict, document already exists (current version "
            f"[{existing.version}])",
            metadata={"index_uuid": target.uuid, "shard": "0", "index": target.concrete},
        )
    doc = target.put(doc_id, source)
    created = existing is None
    return write_result(target, doc_id, doc, "created" if created else "updated"), (
        201 if created else 200
    )


def _parse_document(index: str, source: Any, text: str, now_ms: int) -> dict[str, Any]:
    if not isinstance(source, dict):
        raise EsError(400, "mapper_parsing_exception", "failed to parse")
    if not is_data_stream(index) or "@timestamp" in source:
        return source
    if index.startswith(TIMESTAMP_PIPELINE_PREFIXES):
        stamp = datetime.fromtimestamp(now_ms / 1000, UTC)
        return {
            **source,
            "@timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now_ms % 1000:03d}Z",
        }
    cause = "data stream timestamp field [@timestamp] is missing"
    raise EsError(
        400,
        "document_parsing_exception",
        f"[{_closing_brace(text)}] failed to parse: {cause}",
        caused_by={"type": "illegal_argument_exception", "reason": cause},
    )


def _closing_brace(text: str) -> str:
    """``line:col`` of the document's last ``}`` (where the parser stands after the document)."""
    position = text.rfind("}")
    if position < 0:
        return "1:1"
    line = text.count("\n", 0, position) + 1
    return f"{line}:{position - text.rfind(chr(10), 0, position)}"


def update(
    call: Call, index: str, doc_id: str, body: dict[str, Any], text: str
) -> tuple[dict[str, Any], int]:
    """Apply a partial update (``doc``, ``upsert``, ``doc_as_upsert``); returns body and status.

    Raises:
        EsError: what Elasticsearch answers for this update.
    """
    target = _target(call, index, "update")
    assert target is not None
    authorize_index(call, UPDATE_ACTION, index)
    if body.get("script") is not None:
        raise EsError(400, "illegal_argument_exception", "the sandbox does not run update scripts")
    existing = target.docs.get(doc_id)
    partial = body.get("doc")
    if existing is None:
        upsert = body.get("upsert")
        if upsert is None and body.get("doc_as_upsert") is True:
            upsert = partial
        if upsert is None:
            raise EsError(
                404,
                "document_missing_exception",
                f"[{doc_id}]: document missing",
                metadata={"index_uuid": target.uuid, "shard": "0", "index": target.concrete},
            )
        source = _parse_document(target.name, upsert, text, call.now_ms)
        return write_result(target, doc_id, target.put(doc_id, source), "created"), 201
    merged = merge(existing.source, partial or {})
    if merged == existing.source and body.get("detect_noop", True) is not False:
        result = write_result(target, doc_id, existing, "noop")
        return {**result, "_shards": _NOOP_SHARDS}, 200
    return write_result(target, doc_id, target.put(doc_id, merged), "updated"), 200


def merge(source: dict[str, Any], partial: dict[str, Any]) -> dict[str, Any]:
    """``XContentHelper.update``: objects merge recursively, everything else is replaced."""
    out = dict(source)
    for key, value in partial.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def delete(call: Call, index: str, doc_id: str) -> tuple[dict[str, Any], int]:
    """Delete one document; ``not_found`` (404) when it is absent.

    Raises:
        EsError: 404 for a missing index (deletes never auto-create), 403 without the privilege.
    """
    target = _target(call, index, "delete", auto_create=False)
    if target is None:
        raise index_not_found(index)
    authorize_index(call, DELETE_ACTION, index)
    tombstone = target.delete(doc_id)
    if tombstone is None:
        absent = Doc({}, 1, target.next_seq)
        return write_result(target, doc_id, absent, "not_found"), 404
    return write_result(target, doc_id, tombstone, "deleted"), 200
