"""The planner: tables of (specs, inventory, now) -> actions, with the boundary rows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

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
from rotator.planner import backoff_delay, plan, renewal_at
from rotator.scoping import Grants

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


def spec(name: str = "web", **changes: object) -> SourceSpec:
    base = SourceSpec(
        name=name,
        grants=Grants.build(
            ["monitor"], [([f"logs-{name}-default"], ["create_doc", "auto_configure"])]
        ),
        metadata=(),
        lifetime=timedelta(days=30),
        rotate_before=timedelta(days=10),
        overlap=timedelta(hours=24),
        jitter=timedelta(0),
        critical_before=timedelta(hours=24),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def key(source: SourceSpec, **changes: object) -> KeyView:
    base = KeyView(
        es_id=f"id-{source.name}-1",
        source=source.name,
        generation=1,
        state=KeyState.ACTIVE,
        created_at=T0,
        expires_at=T0 + source.lifetime,
        renewal_at=T0 + source.lifetime - source.rotate_before,
        privileges_fingerprint=source.privileges_fingerprint,
        policy_fingerprint=source.policy_fingerprint,
        delivered_at=T0,
        es_status=EsStatus.VALID,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def kinds(actions: list[Action]) -> list[tuple[ActionKind, str, Reason]]:
    return [(a.kind, a.source, a.reason) for a in actions]


WEB = spec()
RENEWAL = T0 + timedelta(days=20)

ROWS = [
    # (id, specs, inventory, now, expected (kind, source, reason))
    ("no key yet", [WEB], Inventory(), T0, [(ActionKind.PROVISION, "web", Reason.NO_KEY)]),
    ("fresh key: nothing", [WEB], Inventory(keys=(key(WEB),)), T0 + S, []),
    ("one second before renewal", [WEB], Inventory(keys=(key(WEB),)), RENEWAL - S, []),
    (
        "exactly at renewal",
        [WEB],
        Inventory(keys=(key(WEB),)),
        RENEWAL,
        [(ActionKind.ROTATE, "web", Reason.EXPIRING)],
    ),
    (
        "one second after renewal",
        [WEB],
        Inventory(keys=(key(WEB),)),
        RENEWAL + S,
        [(ActionKind.ROTATE, "web", Reason.EXPIRING)],
    ),
    (
        "invalidated outside rotator",
        [WEB],
        Inventory(keys=(key(WEB, es_status=EsStatus.INVALIDATED),)),
        T0 + S,
        [(ActionKind.PROVISION, "web", Reason.DRIFTED)],
    ),
    (
        "deleted outside rotator",
        [WEB],
        Inventory(keys=(key(WEB, es_status=EsStatus.MISSING),)),
        T0 + S,
        [(ActionKind.PROVISION, "web", Reason.DRIFTED)],
    ),
    (
        "privileges changed: update in place",
        [spec(grants=Grants.build([], [(["logs-web-default"], ["create_doc"])]))],
        Inventory(keys=(key(WEB),)),
        T0 + S,
        [(ActionKind.UPDATE, "web", Reason.SPEC_CHANGED)],
    ),
    (
        "metadata changed: not before the next window",
        [spec(metadata=(("team", "x"),))],
        Inventory(keys=(key(WEB),)),
        RENEWAL - S,
        [],
    ),
    (
        "metadata changed: rotate at the window",
        [spec(metadata=(("team", "x"),))],
        Inventory(keys=(key(WEB),)),
        RENEWAL,
        [(ActionKind.ROTATE, "web", Reason.EXPIRING)],
    ),
    (
        "lifetime shortened: the window moves earlier",
        [spec(lifetime=timedelta(days=12), rotate_before=timedelta(days=4))],
        Inventory(keys=(key(WEB),)),
        T0 + timedelta(days=8),
        [(ActionKind.ROTATE, "web", Reason.POLICY_CHANGED)],
    ),
    (
        "lifetime shortened: one second before its window",
        [spec(lifetime=timedelta(days=12), rotate_before=timedelta(days=4))],
        Inventory(keys=(key(WEB),)),
        T0 + timedelta(days=8) - S,
        [],
    ),
    (
        "forced",
        [WEB],
        Inventory(keys=(key(WEB),), forced=frozenset({"web"})),
        T0 + S,
        [(ActionKind.ROTATE, "web", Reason.FORCED)],
    ),
    (
        "backoff holds a due rotation",
        [WEB],
        Inventory(
            sources=(SourceView("web", 2, RENEWAL + timedelta(minutes=2)),), keys=(key(WEB),)
        ),
        RENEWAL + timedelta(minutes=1),
        [(ActionKind.HOLD, "web", Reason.BACKOFF)],
    ),
    (
        "backoff over: rotate",
        [WEB],
        Inventory(
            sources=(SourceView("web", 2, RENEWAL + timedelta(minutes=2)),), keys=(key(WEB),)
        ),
        RENEWAL + timedelta(minutes=2),
        [(ActionKind.ROTATE, "web", Reason.EXPIRING)],
    ),
    (
        "forced ignores backoff",
        [WEB],
        Inventory(
            sources=(SourceView("web", 2, T0 + timedelta(days=1)),),
            keys=(key(WEB),),
            forced=frozenset({"web"}),
        ),
        T0 + S,
        [(ActionKind.ROTATE, "web", Reason.FORCED)],
    ),
    (
        "failing close to expiry: hold and alert",
        [WEB],
        Inventory(sources=(SourceView("web", 5, T0 + timedelta(days=30)),), keys=(key(WEB),)),
        T0 + timedelta(days=29),
        [
            (ActionKind.HOLD, "web", Reason.BACKOFF),
            (ActionKind.ALERT, "web", Reason.EXPIRING_WHILE_FAILING),
        ],
    ),
    (
        "failing but far from expiry: no alert",
        [WEB],
        Inventory(sources=(SourceView("web", 5, T0 + timedelta(days=30)),), keys=(key(WEB),)),
        T0 + timedelta(days=29) - S,
        [(ActionKind.HOLD, "web", Reason.BACKOFF)],
    ),
    (
        "previous key inside its overlap",
        [WEB],
        Inventory(
            keys=(
                key(WEB, es_id="new", generation=2),
                key(WEB, es_id="old", state=KeyState.RETIRING, retire_at=T0 + timedelta(hours=24)),
            )
        ),
        T0 + timedelta(hours=24) - S,
        [],
    ),
    (
        "previous key after its overlap",
        [WEB],
        Inventory(
            keys=(
                key(WEB, es_id="new", generation=2),
                key(WEB, es_id="old", state=KeyState.RETIRING, retire_at=T0 + timedelta(hours=24)),
            )
        ),
        T0 + timedelta(hours=24),
        [(ActionKind.RETIRE, "web", Reason.OVERLAP_ELAPSED)],
    ),
    (
        "source removed: retire after overlap, never at once",
        [],
        Inventory(keys=(key(WEB),)),
        T0 + S,
        [(ActionKind.RETIRE_SOURCE, "web", Reason.SOURCE_REMOVED)],
    ),
    (
        "removed source's key after its overlap",
        [],
        Inventory(keys=(key(WEB, state=KeyState.RETIRING, retire_at=T0 + timedelta(days=1)),)),
        T0 + timedelta(days=1),
        [(ActionKind.RETIRE, "web", Reason.OVERLAP_ELAPSED)],
    ),
    (
        "interrupted rotation is resumed first",
        [WEB],
        Inventory(keys=(key(WEB),), unfinished_rotations=(("web", "r-1"),)),
        RENEWAL,
        [(ActionKind.RESUME, "web", Reason.INTERRUPTED)],
    ),
    (
        "orphaned rotator key",
        [WEB],
        Inventory(keys=(key(WEB),), orphans=("lost",)),
        T0 + S,
        [(ActionKind.INVALIDATE_ORPHAN, "-", Reason.ORPHANED)],
    ),
    (
        "one failing source does not hide another",
        [WEB, spec("db")],
        Inventory(sources=(SourceView("web", 1, T0 + timedelta(hours=1)),)),
        T0,
        [(ActionKind.HOLD, "web", Reason.BACKOFF), (ActionKind.PROVISION, "db", Reason.NO_KEY)],
    ),
]


@pytest.mark.parametrize(
    ("specs", "inventory", "now", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_plan(
    specs: list[SourceSpec],
    inventory: Inventory,
    now: datetime,
    expected: list[tuple[ActionKind, str, Reason]],
) -> None:
    assert kinds(plan(specs, inventory, now)) == expected


def test_due_time_of_a_rotation_is_the_renewal_time() -> None:
    (action,) = plan([WEB], Inventory(keys=(key(WEB),)), RENEWAL + timedelta(hours=3))
    assert action.due_at == RENEWAL
    assert action.key_id == "id-web-1"


def test_plan_is_pure_and_repeatable() -> None:
    inventory = Inventory(keys=(key(WEB),))
    assert plan([WEB], inventory, RENEWAL) == plan([WEB], inventory, RENEWAL)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        (0, timedelta(0)),
        (1, timedelta(minutes=1)),
        (2, timedelta(minutes=2)),
        (3, timedelta(minutes=4)),
        (6, timedelta(minutes=32)),
        (7, timedelta(hours=1)),
        (8, timedelta(hours=1)),
        (500, timedelta(hours=1)),
    ],
)
def test_backoff_doubles_up_to_the_maximum(failures: int, expected: timedelta) -> None:
    assert backoff_delay(failures, timedelta(minutes=1), timedelta(hours=1)) == expected


def test_renewal_without_jitter_is_expiry_minus_rotate_before() -> None:
    assert renewal_at(T0 + timedelta(days=30), timedelta(days=10), timedelta(0), "k") == RENEWAL


def test_jitter_is_chosen_once_per_key_within_bounds_and_whole_seconds() -> None:
    jitter = timedelta(hours=2)
    values = {
        renewal_at(T0 + timedelta(days=30), timedelta(days=10), jitter, f"key-{i}")
        for i in range(200)
    }
    assert all(RENEWAL - jitter <= v <= RENEWAL for v in values)
    assert all(v.microsecond == 0 for v in values)
    assert len(values) > 50
    again = renewal_at(T0 + timedelta(days=30), timedelta(days=10), jitter, "key-7")
    assert again == renewal_at(T0 + timedelta(days=30), timedelta(days=10), jitter, "key-7")
