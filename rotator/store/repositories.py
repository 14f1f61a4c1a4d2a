"""Repositories over the store's tables: the queries and state changes jobs need, never a commit.

Each repository wraps a ``Session`` the caller owns; the caller decides the transaction with
``with session.begin():``. Every method that depends on the time takes ``now`` (an aware UTC
datetime) and binds it as a parameter: the database never decides what time it is.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from rotator.model import canonical_json
from rotator.ports import CurrentKey, SourceFailures
from rotator.store.models import (
    KEY_TRANSITIONS,
    ROTATION_FINISHED,
    ApiKey,
    ApiKeyState,
    AuditEvent,
    Rotation,
    RotationState,
    Source,
    as_utc,
)

# Error texts are kept, but bounded: a runaway message must not bloat every row.
MAX_ERROR_CHARS = 2000


class IllegalTransition(ValueError):
    """A key or rotation was asked to move to a state it cannot reach from where it is."""


def _bounded(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def _rowcount(result: sa.Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


# --- sources -------------------------------------------------------------------------------------


class SourceRepository:
    """The desired state of each configured source and its failure and backoff condition."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, name: str) -> Source | None:
        """Return the source called ``name``, or None."""
        return self._session.get(Source, name)

    def require(self, name: str) -> Source:
        """Return the source called ``name``.

        Raises:
            LookupError: there is no such source.
        """
        source = self.get(name)
        if source is None:
            raise LookupError(f"no source named {name!r} in the store")
        return source

    def upsert_spec(self, name: str, spec: Mapping[str, Any], now: datetime) -> Source:
        """Record the desired spec of a source; a changed or retired source is updated.

        Args:
            name: The source's name from the configuration.
            spec: A JSON-ready snapshot of the source's configuration.
            now: The current time.
        """
        canonical = canonical_json(spec)
        fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
        source = self.get(name)
        if source is None:
            source = Source(name=name, created_at=as_utc(now), generation=0, failure_count=0)
            self._session.add(source)
        elif source.spec_fingerprint == fingerprint and source.retired_at is None:
            return source
        source.spec_json = json.loads(canonical)
        source.spec_fingerprint = fingerprint
        source.retired_at = None
        source.updated_at = as_utc(now)
        self._session.flush()
        return source

    def list_sources(self, *, include_retired: bool = False) -> list[Source]:
        """Return the sources by name; retired ones only when asked."""
        query = sa.select(Source).order_by(Source.name)
        if not include_retired:
            query = query.where(Source.retired_at.is_(None))
        return list(self._session.scalars(query))

    def fingerprints(self) -> dict[str, tuple[str, bool]]:
        """Every source's spec fingerprint and whether it is retired, in one read of columns."""
        query = sa.select(Source.name, Source.spec_fingerprint, Source.retired_at)
        return {
            name: (fingerprint, retired is not None)
            for name, fingerprint, retired in self._session.execute(query)
        }

    def failures(self) -> dict[str, SourceFailures]:
        """Every source's failure condition, in one read of three columns (no whole rows)."""
        query = sa.select(
            Source.name, Source.failure_count, Source.next_attempt_at, Source.last_error
        )
        return {
            name: SourceFailures(count, at, error)
            for name, count, at, error in self._session.execute(query)
        }

    def retire_missing(self, keep: Iterable[str], now: datetime) -> list[str]:
        """Mark every live source not named in ``keep`` as retired; return their names."""
        names = set(keep)
        retired = [source for source in self.list_sources() if source.name not in names]
        for source in retired:
            source.retired_at = as_utc(now)
            source.updated_at = as_utc(now)
        return [source.name for source in retired]

    def ready_for_attempt(self, now: datetime) -> list[Source]:
        """Return the live sources not backing off: no ``next_attempt_at`` or one <= ``now``."""
        query = (
            sa.select(Source)
            .where(Source.retired_at.is_(None))
            .where(sa.or_(Source.next_attempt_at.is_(None), Source.next_attempt_at <= as_utc(now)))
            .order_by(Source.name)
        )
        return list(self._session.scalars(query))

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
        """Clear the failure count, the last error and the backoff after a success."""
        source = self.require(name)
        source.failure_count = 0
        source.last_error = None
        source.next_attempt_at = None
        source.updated_at = as_utc(now)
        return source

    def bump_generation(self, name: str, now: datetime) -> int:
        """Advance the source's generation (its key is being replaced); return the new one."""
        source = self.require(name)
        source.generation += 1
        source.updated_at = as_utc(now)
        return source.generation


# --- api keys ------------------------------------------------------------------------------------

# The time column each state stamps when a key enters it.
_STAMPED_ON_ENTRY = {
    ApiKeyState.DELIVERED: "delivered_at",
    ApiKeyState.ACTIVE: "activated_at",
    ApiKeyState.INVALIDATED: "invalidated_at",
}


class ApiKeyRepository:
    """The keys rotator created for its sources, and their lifecycle."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def add(self, key: ApiKey) -> ApiKey:
        """Insert ``key`` and give it its id."""
        self._session.add(key)
        self._session.flush()
        return key

    def get_by_es_id(self, es_id: str) -> ApiKey | None:
        """Return the key Elasticsearch knows as ``es_id``, or None."""
        return self._session.scalars(sa.select(ApiKey).where(ApiKey.es_id == es_id)).first()

    def current_for_source(self, source_name: str) -> ApiKey | None:
        """Return the source's active key of the highest generation, or None."""
        query = (
            sa.select(ApiKey)
            .where(ApiKey.source_name == source_name, ApiKey.state == ApiKeyState.ACTIVE)
            .order_by(ApiKey.generation.desc(), ApiKey.id.desc())
            .limit(1)
        )
        return self._session.scalars(query).first()

    def current_by_source(self) -> dict[str, CurrentKey]:
        """Every source's active key of the highest generation, in one statement that reads
        only the two columns the health check uses."""
        query = (
            sa.select(ApiKey.source_name, ApiKey.es_id, ApiKey.expires_at)
            .where(ApiKey.state == ApiKeyState.ACTIVE, ApiKey.source_name.is_not(None))
            .order_by(ApiKey.generation, ApiKey.id)
        )
        return {
            source: CurrentKey(es_id, expires)
            for source, es_id, expires in self._session.execute(query)
            if source
        }

    def for_source(
        self, source_name: str, states: Iterable[ApiKeyState] | None = None
    ) -> list[ApiKey]:
        """Return the source's keys (optionally only in ``states``), oldest first."""
        query = sa.select(ApiKey).where(ApiKey.source_name == source_name).order_by(ApiKey.id)
        if states is not None:
            query = query.where(ApiKey.state.in_(list(states)))
        return list(self._session.scalars(query))

    def due_for_renewal(self, now: datetime) -> list[ApiKey]:
        """Return the active keys whose ``renewal_at`` is at or before ``now``, earliest first."""
        query = (
            sa.select(ApiKey)
            .where(ApiKey.state == ApiKeyState.ACTIVE, ApiKey.renewal_at <= as_utc(now))
            .order_by(ApiKey.renewal_at, ApiKey.id)
        )
        return list(self._session.scalars(query))

    def retire_due(self, now: datetime) -> list[ApiKey]:
        """Return the retiring keys whose ``retire_at`` is at or before ``now``, earliest first."""
        query = (
            sa.select(ApiKey)
            .where(ApiKey.state == ApiKeyState.RETIRING, ApiKey.retire_at <= as_utc(now))
            .order_by(ApiKey.retire_at, ApiKey.id)
        )
        return list(self._session.scalars(query))

    def transition(self, key: ApiKey, to: ApiKeyState, now: datetime) -> ApiKey:
        """Move ``key`` to state ``to``, stamping the matching ``*_at`` column with ``now``.

        Raises:
            IllegalTransition: the lifecycle has no move from the key's state to ``to``.
        """
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
        self.transition(key, ApiKeyState.CREATED, now)
        key.es_id = es_id
        key.created_at = as_utc(now)
        key.expires_at = None if expires_at is None else as_utc(expires_at)
        key.renewal_at = None if renewal_at is None else as_utc(renewal_at)
        key.jitter_seconds = jitter_seconds
        key.secret_fingerprint = secret_fingerprint
        self._session.flush()
        return key

    def for_rotation(self, rotation_id: str) -> ApiKey | None:
        """The key row a rotation created (one per rotation), or None."""
        query = sa.select(ApiKey).where(ApiKey.rotation_id == rotation_id).order_by(ApiKey.id)
        return self._session.scalars(query).first()

    def live(self) -> Iterator[ApiKey]:
        """Every key that is current or still serving its consumers (active or retiring).

        Streamed a thousand rows at a time: a caller that keeps what it needs of each row holds
        one batch of rows, not all of them.
        """
        query = sa.select(ApiKey).where(
            ApiKey.state.in_([ApiKeyState.ACTIVE, ApiKeyState.RETIRING]),
            ApiKey.es_id.is_not(None),
        )
        return iter(
            self._session.scalars(query.order_by(ApiKey.id).execution_options(yield_per=1000))
        )

    def known_es_ids(self) -> set[str]:
        """The Elasticsearch ids of every key this store has recorded."""
        query = sa.select(ApiKey.es_id).where(ApiKey.es_id.is_not(None))
        return {es_id for es_id in self._session.scalars(query) if es_id is not None}

    def states_among(self, es_ids: Iterable[str]) -> dict[str, tuple[ApiKeyState, str | None]]:
        """The state and source of each of these keys this store recorded (one statement)."""
        ids = list(es_ids)
        if not ids:
            return {}
        query = sa.select(ApiKey.es_id, ApiKey.state, ApiKey.source_name).where(
            ApiKey.es_id.in_(ids)
        )
        return {
            str(es_id): (state, source) for es_id, state, source in self._session.execute(query)
        }

    def mark_delivery_started(self, key: ApiKey, now: datetime) -> ApiKey:
        """Stamp the moment before the first sink is called: a consumer may hold the key now."""
        if key.delivery_started_at is None:
            key.delivery_started_at = as_utc(now)
        key.updated_at = as_utc(now)
        return key

    def add_receipt(self, key: ApiKey, receipt: Mapping[str, Any], now: datetime) -> ApiKey:
        """Append one sink's receipt (no secret); the first one stamps ``delivered_at``."""
        key.deliveries_json = [*(key.deliveries_json or []), dict(receipt)]
        if key.delivered_at is None:
            key.delivered_at = as_utc(now)
        key.updated_at = as_utc(now)
        return key

    def schedule_retirement(self, key: ApiKey, *, retire_at: datetime, now: datetime) -> ApiKey:
        """Move an active key to ``retiring``; it is invalidated once ``retire_at`` has come."""
        self.transition(key, ApiKeyState.RETIRING, now)
        key.retire_at = as_utc(retire_at)
        return key


# --- rotations -----------------------------------------------------------------------------------


class RotationRepository:
    """Rotation intents: written before Elasticsearch is called, resumed after a crash."""

    def __init__(self, session: Session) -> None:
        self._session = session

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
        self._session.add(rotation)
        self._session.flush()
        return rotation

    def get(self, rotation_id: str) -> Rotation | None:
        """Return the rotation with id ``rotation_id``, or None."""
        return self._session.get(Rotation, rotation_id)

    def unfinished(self, source_name: str | None = None) -> list[Rotation]:
        """Return the rotations not yet completed or compensated, oldest first."""
        query = sa.select(Rotation).where(Rotation.finished_at.is_(None))
        if source_name is not None:
            query = query.where(Rotation.source_name == source_name)
        return list(self._session.scalars(query.order_by(Rotation.started_at, Rotation.id)))

    def latest(self, source_name: str) -> Rotation | None:
        """The source's most recently started rotation, or None."""
        query = (
            sa.select(Rotation)
            .where(Rotation.source_name == source_name)
            .order_by(Rotation.started_at.desc(), Rotation.id.desc())
        )
        return self._session.scalars(query).first()

    def all_ids(self) -> set[str]:
        """The id of every rotation this store started (the nonces its keys carry)."""
        return set(self._session.scalars(sa.select(Rotation.id)))

    def due_for_retry(self, now: datetime) -> list[Rotation]:
        """Return unfinished rotations not backing off: no ``next_attempt_at`` or one <= ``now``."""
        waited = sa.or_(Rotation.next_attempt_at.is_(None), Rotation.next_attempt_at <= as_utc(now))
        query = (
            sa.select(Rotation)
            .where(Rotation.finished_at.is_(None), waited)
            .order_by(Rotation.started_at, Rotation.id)
        )
        return list(self._session.scalars(query))

    def begin_attempt(self, rotation: Rotation, now: datetime) -> Rotation:
        """Count one more attempt at carrying the rotation forward."""
        self._require_unfinished(rotation)
        rotation.attempt_count += 1
        rotation.updated_at = as_utc(now)
        return rotation

    def advance(
        self,
        rotation: Rotation,
        state: RotationState,
        now: datetime,
        *,
        new_key_es_id: str | None = None,
    ) -> Rotation:
        """Move the rotation to ``state``; a finishing state stamps ``finished_at``.

        Raises:
            IllegalTransition: the rotation is already finished.
        """
        self._require_unfinished(rotation)
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
        """Record a failed attempt.

        With a ``next_attempt_at`` the rotation keeps its state and is retried from there; without
        one it moves to ``failed`` and waits for compensation.
        """
        self._require_unfinished(rotation)
        rotation.failure_count += 1
        rotation.last_error = _bounded(error)
        rotation.updated_at = as_utc(now)
        rotation.next_attempt_at = None if next_attempt_at is None else as_utc(next_attempt_at)
        if next_attempt_at is None:
            rotation.state = RotationState.FAILED
        return rotation

    @staticmethod
    def _require_unfinished(rotation: Rotation) -> None:
        if rotation.finished_at is not None:
            raise IllegalTransition(f"rotation {rotation.id} is already {rotation.state}")


# --- audit events --------------------------------------------------------------------------------


class AuditRepository:
    """Raw rows of the audit trail; hashing and verification live in ``rotator.audit``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def append(self, event: AuditEvent) -> AuditEvent:
        """Insert ``event`` with its precomputed ``prev_hash`` and ``hash``; assign ``seq``.

        A second event chained to the same predecessor, or repeating a hash, fails with
        ``sqlalchemy.exc.IntegrityError``.
        """
        self._session.add(event)
        self._session.flush()
        return event

    def last(self) -> AuditEvent | None:
        """Return the newest event (the highest ``seq``), or None for an empty trail."""
        query = sa.select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)
        return self._session.scalars(query).first()

    def next_seq(self) -> int:
        """Return the ``seq`` the next event will get when it names one itself."""
        highest = self._session.scalar(sa.select(sa.func.max(AuditEvent.seq)))
        return 1 if highest is None else int(highest) + 1

    def iter_events(self, *, after_seq: int = 0, page_size: int = 500) -> Iterator[AuditEvent]:
        """Yield every event with ``seq`` above ``after_seq`` in ``seq`` order, page by page."""
        cursor = after_seq
        while True:
            query = (
                sa.select(AuditEvent)
                .where(AuditEvent.seq > cursor)
                .order_by(AuditEvent.seq)
                .limit(page_size)
            )
            page = list(self._session.scalars(query))
            yield from page
            if len(page) < page_size:
                return
            cursor = page[-1].seq

    def count(self) -> int:
        """Return the number of events."""
        return int(self._session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) or 0)
