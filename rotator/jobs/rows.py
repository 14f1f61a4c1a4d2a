"""How lifecycle outcomes are written to key and rotation rows, inside a caller's unit of work."""

from __future__ import annotations

from datetime import datetime, timedelta

from rotator.errors import RotatorError
from rotator.ports import UnitOfWork
from rotator.store.models import ApiKey, ApiKeyState, Rotation, RotationState, Source

# Used only when a source's stored spec has no overlap (a store written by an older version).
FALLBACK_OVERLAP = timedelta(hours=24)


class StepFailed(RotatorError):
    """A lifecycle step failed; the new key (if any) has been dealt with."""


def key_row(uow: UnitOfWork, row_id: int) -> ApiKey:
    """The key row with this primary key.

    Raises:
        StepFailed: it is gone from the store.
    """
    row = uow.key_row(row_id)
    if row is None:
        raise StepFailed(f"api key row {row_id} vanished from the store")
    return row


def rotation_row(uow: UnitOfWork, rotation_id: str) -> Rotation:
    """The rotation with this id.

    Raises:
        StepFailed: it is gone from the store.
    """
    rotation = uow.rotation_row(rotation_id)
    if rotation is None:
        raise StepFailed(f"rotation {rotation_id} vanished from the store")
    return rotation


def stored_overlap(source: Source | None) -> timedelta:
    """The overlap the source was last configured with (its key may outlive its config)."""
    seconds = (source.spec_json or {}).get("overlap_s") if source is not None else None
    return timedelta(seconds=float(seconds)) if seconds else FALLBACK_OVERLAP


def activate(
    uow: UnitOfWork,
    source: str,
    row: ApiKey,
    rotation: Rotation,
    now: datetime,
    overlap: timedelta,
) -> list[str]:
    """Make ``row`` the current key; every other key of the source starts its overlap now."""
    keys = uow.keys
    retiring = []
    found = keys.for_source(source, states=[ApiKeyState.ACTIVE, ApiKeyState.RETIRING])
    current = [key for key in found if key.state is ApiKeyState.ACTIVE]
    partials = [key for key in found if key.state is ApiKeyState.RETIRING]
    for old in current:
        if old.id != row.id:
            keys.schedule_retirement(old, retire_at=now + overlap, now=now)
            retiring.append(old.es_id or "")
    for partial in partials:
        # A key only some sinks took is superseded now: it retires with the others.
        if partial.retire_at is None or partial.retire_at > now + overlap:
            partial.retire_at = now + overlap
            retiring.append(partial.es_id or "")
    if row.state is ApiKeyState.VERIFIED:
        keys.transition(row, ApiKeyState.DELIVERED, now)
    if row.state is ApiKeyState.DELIVERED:
        keys.transition(row, ApiKeyState.ACTIVE, now)
    uow.rotations.advance(rotation, RotationState.COMPLETED, now)
    return retiring


def keep_partial(uow: UnitOfWork, row: ApiKey, now: datetime) -> None:
    """A key some sinks may hold: it serves them until a newer key reaches every sink.

    It waits with no retirement time; the planner asks for a newer key, and the activation of
    that key starts this one's overlap.
    """
    keys = uow.keys
    if row.state is ApiKeyState.VERIFIED:  # delivery starts only after verification
        keys.transition(row, ApiKeyState.DELIVERED, now)
    if row.state is ApiKeyState.DELIVERED:
        keys.transition(row, ApiKeyState.RETIRING, now)
    row.retire_at = None


def settle_failed(
    uow: UnitOfWork, row_id: int, rotation_id: str, error: str, resolution: str, now: datetime
) -> None:
    """Write a failed rotation's outcome: ``kept``, ``invalidated`` or ``unresolved``."""
    keys, rotations = uow.keys, uow.rotations
    row, rotation = key_row(uow, row_id), rotation_row(uow, rotation_id)
    if resolution == "kept":
        keep_partial(uow, row, now)
    elif row.state is not ApiKeyState.FAILED:
        keys.transition(row, ApiKeyState.FAILED, now)
    if resolution == "unresolved":
        rotations.fail(rotation, error, now=now, next_attempt_at=None)
        return
    if resolution == "invalidated":
        keys.transition(row, ApiKeyState.INVALIDATED, now)
    rotation.last_error = error[:2000]
    rotations.advance(rotation, RotationState.COMPENSATED, now)


def close_invalidated(uow: UnitOfWork, rotation_id: str, now: datetime) -> None:
    """Every key row of a compensated rotation ends invalidated."""
    keys = uow.keys
    row = keys.for_rotation(rotation_id)
    if row is None or row.state is ApiKeyState.INVALIDATED:
        return
    if row.state is not ApiKeyState.FAILED:
        keys.transition(row, ApiKeyState.FAILED, now)
    keys.transition(row, ApiKeyState.INVALIDATED, now)
