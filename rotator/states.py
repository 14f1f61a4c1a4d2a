"""The lifecycle's states and the moves between them: the domain's, kept by the store."""

from __future__ import annotations

from enum import StrEnum


class KeyState(StrEnum):
    """Where a key rotator created stands in its lifecycle (DESIGN §4)."""

    PLANNED = "planned"
    CREATING = "creating"
    CREATED = "created"
    VERIFIED = "verified"
    DELIVERED = "delivered"
    ACTIVE = "active"
    RETIRING = "retiring"
    INVALIDATED = "invalidated"
    FAILED = "failed"


class RotationState(StrEnum):
    """How far a rotation (the replacement of one source's key) has come."""

    PLANNED = "planned"
    CREATING = "creating"
    CREATED = "created"
    VERIFIED = "verified"
    DELIVERED = "delivered"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"


_K = KeyState
# The moves a key row may make; anything else is a bug in the caller.
KEY_TRANSITIONS: dict[KeyState, frozenset[KeyState]] = {
    _K.PLANNED: frozenset({_K.CREATING, _K.FAILED}),
    _K.CREATING: frozenset({_K.CREATED, _K.FAILED}),
    _K.CREATED: frozenset({_K.VERIFIED, _K.FAILED, _K.INVALIDATED}),
    _K.VERIFIED: frozenset({_K.DELIVERED, _K.FAILED, _K.INVALIDATED}),
    # RETIRING from DELIVERED: some sinks took the key before another failed; it serves them
    # until a newer key supersedes it.
    _K.DELIVERED: frozenset({_K.ACTIVE, _K.RETIRING, _K.FAILED, _K.INVALIDATED}),
    _K.ACTIVE: frozenset({_K.RETIRING, _K.INVALIDATED}),
    _K.RETIRING: frozenset({_K.INVALIDATED}),
    _K.FAILED: frozenset({_K.INVALIDATED}),
    _K.INVALIDATED: frozenset(),
}

# A rotation in one of these states is finished: nothing is left to resume or compensate.
ROTATION_FINISHED: frozenset[RotationState] = frozenset(
    {RotationState.COMPLETED, RotationState.COMPENSATED}
)
