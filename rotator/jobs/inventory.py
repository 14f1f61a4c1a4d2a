"""Gathering the planner's view: store rows, what Elasticsearch says of them, what sinks hold."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rotator.jobs.context import Deps
from rotator.jobs.rows import stored_overlap
from rotator.model import (
    MANAGED_BY,
    EsStatus,
    Inventory,
    KeyState,
    KeyView,
    SourceSpec,
    SourceView,
)
from rotator.store.models import ApiKey, Source


def gather_inventory(
    deps: Deps,
    specs: Sequence[SourceSpec],
    fingerprints: Mapping[str, str],
    now: datetime,
    forced: frozenset[str],
) -> Inventory:
    """Build the planner's view; a read that fails is retried within the run.

    Raises:
        RotatorError: Elasticsearch kept failing (or refused rotator): nothing is planned on a
            guess.
    """
    with deps.read() as uow:
        sources = uow.sources.list_sources(include_retired=True)
        keys, rotations = uow.keys, uow.rotations
        overlaps = {spec.name: spec.overlap for spec in specs}
        views = tuple(
            _source_view(s, fingerprints.get(s.name), overlaps.get(s.name)) for s in sources
        )
        pending = tuple((r.source_name, r.id) for r in rotations.unfinished())
        known_ids, rotation_ids = keys.known_es_ids(), rotations.all_ids()
        rows = [
            (_key_view_parts(k), list(k.deliveries_json or []), k.deliveries_json is not None)
            for k in keys.live()
        ]
    # One paged read of rotator's keys serves both the status of each tracked key and the
    # orphan scan.
    ours = deps.retrying("read rotator's keys", lambda: _rotator_keys(deps))
    statuses = _es_statuses(ours, [parts["es_id"] for parts, _r, _k in rows], now)
    by_spec = {s.name: s for s in specs}
    key_views = tuple(
        KeyView(
            **parts,
            es_status=statuses.get(parts["es_id"], EsStatus.MISSING),
            delivery_problem=_delivery_problem(deps, by_spec.get(parts["source"]), parts, receipts)
            if tracked
            else None,
        )
        for parts, receipts, tracked in rows
    )
    orphans = _orphans(ours, known_ids, rotation_ids)
    return Inventory(views, key_views, pending, orphans, forced)


@dataclass(frozen=True)
class _Seen:
    """What a sweep keeps of each of rotator's keys: a few fields, not the whole document."""

    invalidated: bool
    expiration: datetime | None
    rotation_id: str | None


def _rotator_keys(deps: Deps) -> dict[str, _Seen]:
    """Rotator's keys, read page by page and kept small (one paged query)."""
    return {
        k.id: _Seen(
            k.invalidated,
            k.expiration,
            str(k.metadata["rotation_id"]) if k.metadata.get("rotation_id") else None,
        )
        for k in deps.authority.iter_by_metadata("managed_by", MANAGED_BY)
    }


def _es_statuses(found: Mapping[str, _Seen], ids: list[str], now: datetime) -> dict[str, EsStatus]:
    statuses = {}
    for es_id in ids:
        info = found.get(es_id)
        if info is None:
            statuses[es_id] = EsStatus.MISSING
        elif info.invalidated:
            statuses[es_id] = EsStatus.INVALIDATED
        elif info.expiration is not None and info.expiration <= now:
            statuses[es_id] = EsStatus.EXPIRED
        else:
            statuses[es_id] = EsStatus.VALID
    return statuses


def _orphans(
    found: Mapping[str, _Seen], known_ids: set[str], rotation_ids: set[str]
) -> tuple[str, ...]:
    """Valid rotator keys this store started but never recorded (their secret is lost).

    Keys from rotations this store does not know are left alone here: another store (or a lost
    one) may have delivered them; the track job invalidates them after ``orphan_grace``.
    """
    return tuple(
        sorted(
            key_id
            for key_id, k in found.items()
            if not k.invalidated and key_id not in known_ids and k.rotation_id in rotation_ids
        )
    )


def _delivery_problem(
    deps: Deps,
    spec: SourceSpec | None,
    parts: Mapping[str, Any],
    receipts: list[dict[str, Any]],
) -> str | None:
    """What changed in what the current key's sinks were given (None for other keys)."""
    if spec is None or parts["state"] is not KeyState.ACTIVE:
        return None
    by_sink = {r.get("name"): r for r in receipts}
    for sink in deps.sinks(spec):
        receipt = by_sink.get(sink.name)
        if receipt is None:
            return f"{sink.name} never received the current key"
        problem = sink.check(receipt.get("state") or {})
        if problem is not None:
            return f"{sink.name}: {problem}"
    return None


def _source_view(source: Source, fingerprint: str | None, overlap: timedelta | None) -> SourceView:
    """``overlap`` is the configured one; a source no longer configured keeps its stored one
    (read only then: the stored spec is the one column of every source a sweep does not need)."""
    if overlap is None:
        overlap = stored_overlap(source)
    if fingerprint is not None and fingerprint != source.spec_fingerprint:
        # A changed spec is a new attempt: ``once`` resets the failures before it plans.
        return SourceView(source.name, 0, None, overlap)
    return SourceView(source.name, source.failure_count, source.next_attempt_at, overlap)


def _key_view_parts(row: ApiKey) -> dict[str, Any]:
    created = row.created_at or row.planned_at
    return {
        "es_id": row.es_id,
        "source": row.source_name or "",
        "generation": row.generation,
        "state": row.state,
        "created_at": created,
        "expires_at": row.expires_at or created,
        "renewal_at": row.renewal_at or created,
        "privileges_fingerprint": row.config_fingerprint or "",
        "policy_fingerprint": row.policy_fingerprint or "",
        "delivered_at": row.delivered_at,
        "retire_at": row.retire_at,
    }
