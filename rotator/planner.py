"""Pure planning: (specs, inventory, now) -> actions. No I/O, no clock."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from rotator.model import (
    Action,
    ActionKind,
    EsStatus,
    Inventory,
    KeyState,
    KeyView,
    Reason,
    SourceSpec,
    SourceView,
)

_GONE = (EsStatus.INVALIDATED, EsStatus.MISSING, EsStatus.EXPIRED)


def plan(specs: Sequence[SourceSpec], inventory: Inventory, now: datetime) -> list[Action]:
    """Every action due at ``now``, in the order the executor should take them."""
    actions: list[Action] = []
    for spec in specs:
        actions.extend(_plan_source(spec, inventory, now))
    wanted = {spec.name for spec in specs}
    actions.extend(_plan_removed(wanted, inventory, now))
    actions.extend(
        Action(ActionKind.INVALIDATE_ORPHAN, "-", Reason.ORPHANED, now, key_id)
        for key_id in inventory.orphans
    )
    return actions


def renewal_at(
    expires_at: datetime, rotate_before: timedelta, jitter: timedelta, seed: str
) -> datetime:
    """When a key should be replaced: ``expires_at - rotate_before``, moved earlier by jitter.

    The jitter is derived from ``seed`` (the key id), so it is chosen once per key and the same
    on every run; the result is truncated to whole seconds.
    """
    return (expires_at - rotate_before - jitter_for(jitter, seed)).replace(microsecond=0)


def jitter_for(jitter: timedelta, seed: str) -> timedelta:
    """A whole number of seconds in ``[0, jitter]``, fixed by ``seed``."""
    if jitter <= timedelta(0):
        return timedelta(0)
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    return timedelta(seconds=digest % (int(jitter.total_seconds()) + 1))


def backoff_delay(failures: int, initial: timedelta, maximum: timedelta) -> timedelta:
    """``min(initial * 2^(failures-1), maximum)``; no delay before the first failure."""
    if failures <= 0:
        return timedelta(0)
    if failures > 40:
        return maximum
    delay: timedelta = initial * (1 << (failures - 1))
    return min(delay, maximum)


# --- one source ----------------------------------------------------------------------------------


def _plan_source(spec: SourceSpec, inventory: Inventory, now: datetime) -> list[Action]:
    keys = inventory.keys_of(spec.name)
    source = inventory.source(spec.name)
    current = _current(keys)
    actions = _retirements(keys, now)
    alert = _alert(spec, current, source, now)
    interrupted = inventory.interrupted(spec.name)
    if interrupted:
        # Recovery runs first; a stuck one must not silence the critical alert.
        resume = Action(
            ActionKind.RESUME,
            spec.name,
            Reason.INTERRUPTED,
            now,
            None,
            f"rotation {interrupted[0]}",
        )
        return [resume, *actions] + ([alert] if alert else [])
    main = _main_action(spec, current, keys, inventory, now)
    if main is not None and main.kind is not ActionKind.ALERT:
        held = _held(source, spec.name, inventory, now)
        main = held or main
    if main is not None:
        actions.insert(0, main)
    return actions + ([alert] if alert else [])


def _current(keys: list[KeyView]) -> KeyView | None:
    return next((k for k in keys if k.state is KeyState.ACTIVE), None)


def _main_action(
    spec: SourceSpec,
    current: KeyView | None,
    keys: list[KeyView],
    inventory: Inventory,
    now: datetime,
) -> Action | None:
    name = spec.name
    if current is None:
        return Action(ActionKind.PROVISION, name, Reason.NO_KEY, now)
    if current.es_status in _GONE:
        return Action(
            ActionKind.PROVISION,
            name,
            Reason.DRIFTED,
            now,
            current.es_id,
            f"the current key is {current.es_status.value} in Elasticsearch",
        )
    if name in inventory.forced:
        return Action(ActionKind.ROTATE, name, Reason.FORCED, now, current.es_id)
    if current.delivery_problem is not None:
        return Action(
            ActionKind.ROTATE,
            name,
            Reason.DRIFTED,
            now,
            current.es_id,
            f"what was delivered changed: {current.delivery_problem}",
        )
    partial = next(
        (k for k in keys if k.awaiting_successor and k.generation > current.generation), None
    )
    if partial is not None:
        return Action(
            ActionKind.ROTATE,
            name,
            Reason.PARTIALLY_DELIVERED,
            now,
            current.es_id,
            f"{partial.es_id} may have reached only some sinks: deliver a newer key to all",
        )
    if now >= current.renewal_at:
        return Action(
            ActionKind.ROTATE,
            name,
            Reason.EXPIRING,
            current.renewal_at,
            current.es_id,
            f"expires at {current.expires_at.isoformat()}",
        )
    if current.policy_fingerprint != spec.policy_fingerprint:
        due = min(current.renewal_at, current.created_at + spec.lifetime - spec.rotate_before)
        if now >= due:
            return Action(
                ActionKind.ROTATE,
                name,
                Reason.POLICY_CHANGED,
                due,
                current.es_id,
                "lifetime or metadata changed",
            )
    if current.privileges_fingerprint != spec.privileges_fingerprint:
        return Action(
            ActionKind.UPDATE,
            name,
            Reason.SPEC_CHANGED,
            now,
            current.es_id,
            "privileges changed: update the key's role descriptors in place",
        )
    return None


def _held(source: SourceView, name: str, inventory: Inventory, now: datetime) -> Action | None:
    if name in inventory.forced or source.next_attempt_at is None or now >= source.next_attempt_at:
        return None
    return Action(
        ActionKind.HOLD,
        name,
        Reason.BACKOFF,
        source.next_attempt_at,
        None,
        f"{source.failure_count} failure(s); next attempt at {source.next_attempt_at.isoformat()}",
    )


def _alert(
    spec: SourceSpec, current: KeyView | None, source: SourceView, now: datetime
) -> Action | None:
    if current is None or source.failure_count == 0:
        return None
    if current.expires_at - now > spec.critical_before:
        return None
    return Action(
        ActionKind.ALERT,
        spec.name,
        Reason.EXPIRING_WHILE_FAILING,
        now,
        current.es_id,
        f"expires at {current.expires_at.isoformat()} and rotation failed "
        f"{source.failure_count} time(s)",
    )


def _retirements(keys: list[KeyView], now: datetime) -> list[Action]:
    """Previous keys whose overlap has passed (the executor checks acknowledgements first)."""
    return [
        Action(ActionKind.RETIRE, key.source, Reason.OVERLAP_ELAPSED, key.retire_at, key.es_id)
        for key in keys
        if key.state is KeyState.RETIRING and key.retire_at is not None and now >= key.retire_at
    ]


def _plan_removed(wanted: set[str], inventory: Inventory, now: datetime) -> list[Action]:
    actions = []
    for key in inventory.keys:
        if key.source in wanted:
            continue
        if key.state is KeyState.ACTIVE or key.awaiting_successor:
            overlap = inventory.source(key.source).overlap
            actions.append(
                Action(
                    ActionKind.RETIRE_SOURCE,
                    key.source,
                    Reason.SOURCE_REMOVED,
                    now,
                    key.es_id,
                    f"invalidated after {overlap}, not at once",
                )
            )
        elif key.state is KeyState.RETIRING and key.retire_at is not None and now >= key.retire_at:
            actions.append(
                Action(
                    ActionKind.RETIRE, key.source, Reason.OVERLAP_ELAPSED, key.retire_at, key.es_id
                )
            )
    return actions
