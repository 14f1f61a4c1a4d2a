"""The in-memory store's tables and its repositories, with the SQL repositories' semantics.

The rows are the store's mapped classes used as plain data holders (never attached to a
session); ``Tables.copy`` gives a version whose rows can change without touching the original.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from rotator.model import spec_fingerprint
from rotator.ports import CurrentKey, SourceFailures
from rotator.states import KEY_TRANSITIONS, ROTATION_FINISHED, KeyState, RotationState
from rotator.store.models import ApiKey, AuditEvent, Rotation, Source, as_utc
from rotator.store.repositories import MAX_ERROR_CHARS, IllegalTransition

__all__ = ["InMemoryKeys", "InMemoryRotations", "InMemorySources", "Tables", "clone"]

Row = TypeVar("Row", Source, ApiKey, Rotation, AuditEvent)

# The time column each state stamps when a key enters it (as the SQL repository does).
_STAMPED_ON_ENTRY = {
    KeyState.DELIVERED: "delivered_at",
    KeyState.ACTIVE: "activated_at",
    KeyState.INVALIDATED: "invalidated_at",
}


def clone(row: Row) -> Row:
    """A detached copy of a mapped row: every column, JSON values copied deeply."""
    columns = sa.inspect(type(row)).column_attrs
    return type(row)(**{c.key: copy.deepcopy(getattr(row, c.key)) for c in columns})


def _with_defaults(row: Row) -> Row:
    """Fill the columns left unset with their scalar defaults, as an INSERT would."""
    for column in sa.inspect(type(row)).columns:
        default = column.default
        unset = getattr(row, column.key) is None
        if unset and isinstance(default, sa.ColumnDefault) and default.is_scalar:
            setattr(row, column.key, default.arg)
    return row


def _bounded(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


@dataclass
class Tables:
    """One version of the whole store."""

    sources: dict[str, Source] = field(default_factory=dict)
    keys: dict[int, ApiKey] = field(default_factory=dict)
    rotations: dict[str, Rotation] = field(default_factory=dict)
    events: list[AuditEvent] = field(default_factory=list)

    def copy(self) -> Tables:
        """A version whose rows can change without touching this one."""
        return Tables(
            {k: clone(v) for k, v in self.sources.items()},
            {k: clone(v) for k, v in self.keys.items()},
            {k: clone(v) for k, v in self.rotations.items()},
            [clone(e) for e in self.events],
        )


class InMemorySources:
    """``SourceRepository`` over a unit's tables."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def get(self, name: str) -> Source | None:
        """The source called ``name``, or None."""
        return self._t.sources.get(name)

    def require(self, name: str) -> Source:
        """The source called ``name``; LookupError when there is none."""
        source = self.get(name)
        if source is None:
            raise LookupError(f"no source named {name!r} in the store")
        return source

    def upsert_spec(self, name: str, spec: Mapping[str, Any], now: datetime) -> Source:
        """Record a source's desired spec; a changed or retired source is updated."""
        fingerprint = spec_fingerprint(spec)
        source = self.get(name)
        if source is None:
            source = Source(name=name, created_at=as_utc(now), generation=0, failure_count=0)
            self._t.sources[name] = source
        elif source.spec_fingerprint == fingerprint and source.retired_at is None:
            return source
        source.spec_json = json.loads(json.dumps(dict(spec), sort_keys=True))
        source.spec_fingerprint = fingerprint
        source.retired_at = None
        source.updated_at = as_utc(now)
        return source

    def list_sources(self, *, include_retired: bool = False) -> list[Source]:
        """The sources by name; retired ones only when asked."""
        found = [s for s in self._t.sources.values() if include_retired or s.retired_at is None]
        return sorted(found, key=lambda s: s.name)

    def fingerprints(self) -> dict[str, tuple[str, bool]]:
        """Every source's spec fingerprint and whether it is retired."""
        return {
            s.name: (s.spec_fingerprint, s.retired_at is not None) for s in self._t.sources.values()
        }

    def failures(self) -> dict[str, SourceFailures]:
        """Every source's failure condition."""
        return {
            s.name: SourceFailures(s.failure_count, s.next_attempt_at, s.last_error)
            for s in self._t.sources.values()
        }

    def record_failure(
        self, name: str, error: str, *, now: datetime, next_attempt_at: datetime
    ) -> Source:
        """Count a failed attempt and hold the source back until ``next_attempt_at``."""
        source = self.require(name)
        source.failure_count += 1
        source.last_error = _bounded(error)
        source.next_attempt_at = as_utc(next_attempt_at)
        source.updated_at = as_utc(now)
        return source

    def reset_failures(self, name: str, now: datetime) -> Source:
        """Clear the failure count, the last error and the backoff."""
        source = self.require(name)
        source.failure_count = 0
        source.last_error = None
        source.next_attempt_at = None
        source.updated_at = as_utc(now)
        return source

    def bump_generation(self, name: str, now: datetime) -> int:
        """Advance the source's generation; returns the new one."""
        source = self.require(name)
        source.generation += 1
        source.updated_at = as_utc(now)
        return source.generation


class InMemoryKeys:
    """``ApiKeyRepository`` over a unit's tables."""

    def __init__(self, tables: Tables, ids: Iterator[int]) -> None:
        self._t = tables
        self._ids = ids

    def add(self, key: ApiKey) -> ApiKey:
        """Insert ``key`` and give it its id (ids are never reused, like a sequence's)."""
        if key.es_id is not None and self.get_by_es_id(key.es_id) is not None:
            raise ValueError(f"api key {key.es_id} is already recorded")
        key.id = next(self._ids)
        self._t.keys[key.id] = _with_defaults(key)
        return key

    def _all(self) -> list[ApiKey]:
        return sorted(self._t.keys.values(), key=lambda k: k.id)

    def get_by_es_id(self, es_id: str) -> ApiKey | None:
        """The key Elasticsearch knows as ``es_id``, or None."""
        return next((k for k in self._all() if k.es_id == es_id), None)

    def current_for_source(self, source_name: str) -> ApiKey | None:
        """The source's active key of the highest generation, or None."""
        active = self.for_source(source_name, [KeyState.ACTIVE])
        return max(active, key=lambda k: (k.generation, k.id), default=None)

    def current_by_source(self) -> dict[str, CurrentKey]:
        """Every source's active key of the highest generation."""
        out: dict[str, CurrentKey] = {}
        for key in sorted(self._all(), key=lambda k: (k.generation, k.id)):
            if key.state is KeyState.ACTIVE and key.source_name:
                out[key.source_name] = CurrentKey(key.es_id, key.expires_at)
        return out

    def for_source(
        self, source_name: str, states: Iterable[KeyState] | None = None
    ) -> list[ApiKey]:
        """The source's keys (optionally only in ``states``), oldest first."""
        wanted = None if states is None else set(states)
        return [
            k
            for k in self._all()
            if k.source_name == source_name and (wanted is None or k.state in wanted)
        ]

    def for_rotation(self, rotation_id: str) -> ApiKey | None:
        """The key row a rotation created, or None."""
        return next((k for k in self._all() if k.rotation_id == rotation_id), None)

    def live(self) -> list[ApiKey]:
        """Every recorded key that is active or retiring."""
        states = {KeyState.ACTIVE, KeyState.RETIRING}
        return [k for k in self._all() if k.state in states and k.es_id is not None]

    def known_es_ids(self) -> set[str]:
        """The Elasticsearch ids of every recorded key."""
        return {k.es_id for k in self._all() if k.es_id is not None}

    def transition(self, key: ApiKey, to: KeyState, now: datetime) -> ApiKey:
        """Move ``key`` to ``to``; IllegalTransition when the lifecycle has no such move."""
        if to not in KEY_TRANSITIONS[key.state]:
            raise IllegalTransition(f"api key {key.id} cannot move from {key.state} to {to}")
        key.state = to
        key.updated_at = as_utc(now)
        stamp = _STAMPED_ON_ENTRY.get(to)
        if stamp is not None:
            setattr(key, stamp, as_utc(now))
        return key

    def record_created(
        self,
        key: ApiKey,
        *,
        es_id: str,
        expires_at: datetime | None,
        renewal_at: datetime | None,
        secret_fingerprint: str,
        now: datetime,
        jitter_seconds: int = 0,
    ) -> ApiKey:
        """Record what Elasticsearch returned for a new key and move it to ``created``."""
        other = self.get_by_es_id(es_id)
        if other is not None and other.id != key.id:
            raise ValueError(f"api key {es_id} is already recorded")
        self.transition(key, KeyState.CREATED, now)
        key.es_id = es_id
        key.created_at = as_utc(now)
        key.expires_at = _utc(expires_at)
        key.renewal_at = _utc(renewal_at)
        key.jitter_seconds = jitter_seconds
        key.secret_fingerprint = secret_fingerprint
        return key

    def mark_delivery_started(self, key: ApiKey, now: datetime) -> ApiKey:
        """Stamp the moment before the first sink is called."""
        if key.delivery_started_at is None:
            key.delivery_started_at = as_utc(now)
        key.updated_at = as_utc(now)
        return key

    def add_receipt(self, key: ApiKey, receipt: Mapping[str, Any], now: datetime) -> ApiKey:
        """Append one sink's receipt; the first one stamps ``delivered_at``."""
        key.deliveries_json = [*(key.deliveries_json or []), dict(receipt)]
        if key.delivered_at is None:
            key.delivered_at = as_utc(now)
        key.updated_at = as_utc(now)
        return key

    def schedule_retirement(self, key: ApiKey, *, retire_at: datetime, now: datetime) -> ApiKey:
        """Move an active key to ``retiring`` until ``retire_at``."""
        self.transition(key, KeyState.RETIRING, now)
        key.retire_at = as_utc(retire_at)
        return key


class InMemoryRotations:
    """``RotationRepository`` over a unit's tables."""

    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def start(
        self,
        source_name: str,
        reason: str,
        now: datetime,
        *,
        previous_key_es_id: str | None = None,
        state: RotationState = RotationState.PLANNED,
    ) -> Rotation:
        """Record the intent to replace a source's key, with a fresh uuid4 rotation id."""
        if source_name not in self._t.sources:
            raise LookupError(f"no source named {source_name!r} in the store")
        rotation = Rotation(
            id=str(uuid.uuid4()),
            source_name=source_name,
            reason=reason,
            state=state,
            previous_key_es_id=previous_key_es_id,
            attempt_count=0,
            failure_count=0,
            started_at=as_utc(now),
            updated_at=as_utc(now),
        )
        self._t.rotations[rotation.id] = rotation
        return rotation

    def unfinished(self, source_name: str | None = None) -> list[Rotation]:
        """The rotations neither completed nor compensated, oldest first."""
        found = [
            r
            for r in self._t.rotations.values()
            if r.finished_at is None and source_name in (None, r.source_name)
        ]
        return sorted(found, key=lambda r: (r.started_at, r.id))

    def all_ids(self) -> set[str]:
        """The id of every rotation the store started."""
        return set(self._t.rotations)

    def advance(
        self,
        rotation: Rotation,
        state: RotationState,
        now: datetime,
        *,
        new_key_es_id: str | None = None,
    ) -> Rotation:
        """Move the rotation on; IllegalTransition when it is already finished."""
        _require_unfinished(rotation)
        rotation.state = state
        rotation.updated_at = as_utc(now)
        rotation.next_attempt_at = None
        if new_key_es_id is not None:
            rotation.new_key_es_id = new_key_es_id
        if state in ROTATION_FINISHED:
            rotation.finished_at = as_utc(now)
        return rotation

    def fail(
        self,
        rotation: Rotation,
        error: str,
        *,
        now: datetime,
        next_attempt_at: datetime | None,
    ) -> Rotation:
        """Record a failed attempt (without ``next_attempt_at``: the rotation is failed)."""
        _require_unfinished(rotation)
        rotation.failure_count += 1
        rotation.last_error = _bounded(error)
        rotation.updated_at = as_utc(now)
        rotation.next_attempt_at = _utc(next_attempt_at)
        if next_attempt_at is None:
            rotation.state = RotationState.FAILED
        return rotation


def _require_unfinished(rotation: Rotation) -> None:
    if rotation.finished_at is not None:
        raise IllegalTransition(f"rotation {rotation.id} is already {rotation.state}")
