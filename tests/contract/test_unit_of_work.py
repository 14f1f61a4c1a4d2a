"""The unit of work's contract, over the SQL store (SQLite, PostgreSQL) and the in-memory fake.

What the lifecycle relies on: the repositories' queries and state changes, a failed unit leaving
nothing behind, a read unit writing nothing, and the audit event committing with its change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rotator.audit import AuditLog, verify
from rotator.errors import LeaseLost
from rotator.ports import UnitOfWork, UnitsOfWork
from rotator.states import KeyState, RotationState
from rotator.store.db import make_engine, session_factory, upgrade
from rotator.store.models import ApiKey
from rotator.store.repositories import MAX_ERROR_CHARS, AuditRepository, IllegalTransition
from rotator.store.uow import SqlUnitsOfWork
from rotator.vocabulary import AuditAction, AuditOutcome
from tests.conftest import POSTGRES_ENV, _postgres_schema_url
from tests.fakes.store import InMemoryStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = {"name": "web", "overlap_s": 3600}


@dataclass
class Backend:
    """A store behind the port, and what a test reads back from its audit trail."""

    units: UnitsOfWork
    events: Callable[[], list[tuple[int, str, str, dict[str, Any]]]]
    chain_holds: Callable[[], bool]


class RefusingFence:
    """A lease that is gone: it refuses the first write it is asked about, and every later one."""

    def __init__(self) -> None:
        self.lost = False
        self.checks = 0

    def check(self, session: object, now: datetime) -> None:
        self.checks += 1
        self.lost = True
        raise LeaseLost("the leader lease was lost")


def _sql(url: str) -> Iterator[Backend]:
    engine = make_engine(url)
    upgrade(engine)
    sessions = session_factory(engine)
    units = SqlUnitsOfWork(sessions, AuditLog(sessions, actor="t"), lambda: T0)

    def events() -> list[tuple[int, str, str, dict[str, Any]]]:
        with sessions() as session:
            return [
                (e.seq, e.action, e.subject, dict(e.details_json))
                for e in AuditRepository(session).iter_events()
            ]

    def chain_holds() -> bool:
        with sessions() as session:
            return verify(session).ok

    try:
        yield Backend(units, events, chain_holds)
    finally:
        engine.dispose()


def _memory() -> Backend:
    store = InMemoryStore(actor="t")

    def events() -> list[tuple[int, str, str, dict[str, Any]]]:
        return [(e.seq, e.action, e.subject, dict(e.details_json)) for e in store.snapshot().events]

    return Backend(store, events, lambda: store.verify_audit_chain()[0])


def _params() -> list[Any]:
    params = [pytest.param("memory", id="memory"), pytest.param("sqlite", id="sqlite")]
    if os.environ.get(POSTGRES_ENV):
        params.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))
    return params


@pytest.fixture(params=_params())
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each implementation of the port, on an empty store."""
    if request.param == "memory":
        yield _memory()
    elif request.param == "sqlite":
        yield from _sql(f"sqlite:///{tmp_path / 'rotator.db'}")
    else:
        for url in _postgres_schema_url(os.environ[POSTGRES_ENV]):
            yield from _sql(url)


def _source(uow: UnitOfWork, name: str = "web", spec: dict[str, Any] | None = None) -> None:
    uow.sources.upsert_spec(name, spec or SPEC, T0)


def _key(uow: UnitOfWork, source: str = "web", generation: int = 1) -> ApiKey:
    rotation = uow.rotations.start(source, "provision", T0)
    return uow.keys.add(
        ApiKey(
            name=f"rotator-{source}-{generation}",
            source_name=source,
            generation=generation,
            state=KeyState.PLANNED,
            rotation_id=rotation.id,
            planned_at=T0,
            updated_at=T0,
        )
    )


def _activate(uow: UnitOfWork, row: ApiKey, es_id: str, now: datetime = T0) -> None:
    keys = uow.keys
    keys.transition(row, KeyState.CREATING, now)
    keys.record_created(
        row, es_id=es_id, expires_at=now + timedelta(days=30), renewal_at=None,
        secret_fingerprint="f" * 64, now=now,
    )  # fmt: skip
    for state in (KeyState.VERIFIED, KeyState.DELIVERED, KeyState.ACTIVE):
        keys.transition(row, state, now)


# --- sources -------------------------------------------------------------------------------------


def test_a_source_is_recorded_and_a_changed_spec_updates_it(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow)
    with backend.units.write() as uow:
        before = uow.sources.require("web").spec_fingerprint
        _source(uow, spec={**SPEC, "overlap_s": 60})
    with backend.units.read() as uow:
        source = uow.sources.require("web")
        assert source.spec_fingerprint != before
        assert source.spec_json == {**SPEC, "overlap_s": 60}
        assert (source.generation, source.failure_count) == (0, 0)
        assert uow.sources.get("nope") is None
        with pytest.raises(LookupError):
            uow.sources.require("nope")


def test_retired_sources_are_listed_only_when_asked(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow, "b")
        _source(uow, "a")
        uow.sources.require("b").retired_at = T0
    with backend.units.read() as uow:
        assert [s.name for s in uow.sources.list_sources()] == ["a"]
        assert [s.name for s in uow.sources.list_sources(include_retired=True)] == ["a", "b"]


def test_failures_back_a_source_off_and_a_reset_clears_them(backend: Backend) -> None:
    later = T0 + timedelta(minutes=5)
    with backend.units.write() as uow:
        _source(uow)
        uow.sources.record_failure(
            "web", "x" * (MAX_ERROR_CHARS + 50), now=T0, next_attempt_at=later
        )
        uow.sources.record_failure("web", "boom", now=T0, next_attempt_at=later)
    with backend.units.read() as uow:
        source = uow.sources.require("web")
        assert (source.failure_count, source.last_error, source.next_attempt_at) == (
            2, "boom", later,
        )  # fmt: skip
    with backend.units.write() as uow:
        uow.sources.record_failure(
            "web", "y" * (MAX_ERROR_CHARS + 50), now=T0, next_attempt_at=later
        )
    with backend.units.read() as uow:
        assert len(uow.sources.require("web").last_error or "") == MAX_ERROR_CHARS
    with backend.units.write() as uow:
        uow.sources.reset_failures("web", later)
    with backend.units.read() as uow:
        source = uow.sources.require("web")
        assert (source.failure_count, source.last_error, source.next_attempt_at) == (0, None, None)


def test_the_generation_only_goes_up(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow)
        assert uow.sources.bump_generation("web", T0) == 1
    with backend.units.write() as uow:
        assert uow.sources.bump_generation("web", T0) == 2
    with backend.units.read() as uow:
        assert uow.sources.require("web").generation == 2


# --- keys ----------------------------------------------------------------------------------------


def test_a_key_moves_only_along_the_lifecycle(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow)
        row = _key(uow)
        row_id = row.id
        _activate(uow, row, "es-1")
    with backend.units.read() as uow:
        stored = uow.key_row(row_id)
        assert stored is not None
        assert (stored.state, stored.es_id, stored.activated_at) == (KeyState.ACTIVE, "es-1", T0)
        assert stored.delivered_at == T0
        assert uow.key_row(row_id + 1000) is None
    with pytest.raises(IllegalTransition), backend.units.write() as uow:
        uow.keys.transition(uow.keys.get_by_es_id("es-1") or ApiKey(), KeyState.CREATED, T0)


def test_the_current_key_is_the_active_one_of_the_highest_generation(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow)
        _source(uow, "other")
        old, new, pending = (
            _key(uow, generation=1),
            _key(uow, generation=2),
            _key(uow, generation=3),
        )
        _activate(uow, old, "es-old")
        _activate(uow, new, "es-new")
        _activate(uow, _key(uow, "other", 9), "es-other")
        uow.keys.transition(pending, KeyState.CREATING, T0)
        pending_rotation = pending.rotation_id
    with backend.units.write() as uow:
        current = uow.keys.current_for_source("web")
        assert current is not None
        assert current.es_id == "es-new"
        old_row = uow.keys.get_by_es_id("es-old")
        assert old_row is not None
        uow.keys.schedule_retirement(old_row, retire_at=T0 + timedelta(hours=1), now=T0)
    with backend.units.read() as uow:
        keys = uow.keys
        assert [k.es_id for k in keys.for_source("web")] == ["es-old", "es-new", None]
        assert [k.es_id for k in keys.for_source("web", [KeyState.RETIRING])] == ["es-old"]
        assert [k.es_id for k in keys.live()] == ["es-old", "es-new", "es-other"]
        assert keys.known_es_ids() == {"es-old", "es-new", "es-other"}
        assert keys.current_for_source("nobody") is None
        by_rotation = keys.for_rotation(pending_rotation or "")
        assert by_rotation is not None
        assert by_rotation.state is KeyState.CREATING
        retiring = keys.get_by_es_id("es-old")
        assert retiring is not None
        assert retiring.retire_at == T0 + timedelta(hours=1)


def test_delivery_is_stamped_once_and_receipts_accumulate(backend: Backend) -> None:
    later = T0 + timedelta(minutes=1)
    with backend.units.write() as uow:
        _source(uow)
        row = _key(uow)
        row_id = row.id
        uow.keys.mark_delivery_started(row, T0)
        uow.keys.add_receipt(row, {"name": "file:/a", "state": {}}, T0)
    with backend.units.write() as uow:
        row = uow.key_row(row_id) or ApiKey()
        uow.keys.mark_delivery_started(row, later)
        uow.keys.add_receipt(row, {"name": "exec:b"}, later)
    with backend.units.read() as uow:
        row = uow.key_row(row_id) or ApiKey()
        assert (row.delivery_started_at, row.delivered_at) == (T0, T0)
        assert [r["name"] for r in row.deliveries_json or []] == ["file:/a", "exec:b"]


# --- rotations -----------------------------------------------------------------------------------


def test_rotations_stay_unfinished_until_completed_or_compensated(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow)
        first = uow.rotations.start("web", "expiring", T0, previous_key_es_id="es-0")
        second = uow.rotations.start("web", "drifted", T0 + timedelta(seconds=1))
        ids = (first.id, second.id)
        uow.rotations.advance(first, RotationState.CREATED, T0, new_key_es_id="es-1")
    with backend.units.read() as uow:
        assert [r.id for r in uow.rotations.unfinished()] == list(ids)
        assert [r.id for r in uow.rotations.unfinished("other")] == []
        assert uow.rotations.all_ids() == set(ids)
        stored = uow.rotation_row(ids[0])
        assert stored is not None
        assert (stored.state, stored.new_key_es_id, stored.previous_key_es_id) == (
            RotationState.CREATED, "es-1", "es-0",
        )  # fmt: skip
        assert uow.rotation_row("no-such-rotation") is None
    with backend.units.write() as uow:
        uow.rotations.advance(uow.rotation_row(ids[0]) or first, RotationState.COMPLETED, T0)
        failed = uow.rotations.fail(
            uow.rotation_row(ids[1]) or second, "create: boom", now=T0, next_attempt_at=None
        )
        assert failed.state is RotationState.FAILED
    with backend.units.read() as uow:
        assert [r.id for r in uow.rotations.unfinished()] == [ids[1]]
        done = uow.rotation_row(ids[0])
        assert done is not None
        assert done.finished_at == T0
    with pytest.raises(IllegalTransition), backend.units.write() as uow:
        uow.rotations.advance(uow.rotation_row(ids[0]) or first, RotationState.CREATED, T0)


def test_a_failure_with_a_retry_time_keeps_the_rotations_state(backend: Backend) -> None:
    retry = T0 + timedelta(minutes=2)
    with backend.units.write() as uow:
        _source(uow)
        rotation = uow.rotations.start("web", "expiring", T0)
        uow.rotations.advance(rotation, RotationState.CREATING, T0)
        uow.rotations.fail(rotation, "timeout", now=T0, next_attempt_at=retry)
        rotation_id = rotation.id
    with backend.units.read() as uow:
        stored = uow.rotation_row(rotation_id)
        assert stored is not None
        assert (stored.state, stored.failure_count, stored.next_attempt_at) == (
            RotationState.CREATING, 1, retry,
        )  # fmt: skip


# --- transactions and audit ----------------------------------------------------------------------


def _audit(uow: UnitOfWork, action: AuditAction, **details: Any) -> int:
    return uow.audit(
        now=T0, action=action, subject="web", outcome=AuditOutcome.SUCCESS, details=details
    )


def _fail_after_changes(units: UnitsOfWork) -> None:
    with units.write() as uow:
        uow.sources.bump_generation("web", T0)
        uow.sources.require("web").last_error = "changed"
        _key(uow)
        _audit(uow, AuditAction.KEY_ACTIVATED, n=2)
        raise RuntimeError("crash")


def test_a_failed_unit_leaves_nothing_behind(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow)
        _audit(uow, AuditAction.ROTATION_STARTED, n=1)
    with pytest.raises(RuntimeError, match="crash"):
        _fail_after_changes(backend.units)
    with backend.units.read() as uow:
        source = uow.sources.require("web")
        assert (source.generation, source.last_error) == (0, None)
        assert uow.keys.for_source("web") == []
        assert uow.rotations.all_ids() == set()
    assert [e[1] for e in backend.events()] == [AuditAction.ROTATION_STARTED.value]


def test_the_audit_event_commits_with_its_change_chained_and_redacted(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow)
        assert _audit(uow, AuditAction.ROTATION_STARTED, key_name="k") == 1
        assert _audit(uow, AuditAction.KEY_VERIFIED, encoded="c2VjcmV0", key_id="es-1") == 2
    with backend.units.write() as uow:
        uow.sources.bump_generation("web", T0)
        assert _audit(uow, AuditAction.KEY_ACTIVATED, key_id="es-1") == 3
    events = backend.events()
    assert [(seq, action) for seq, action, _s, _d in events] == [
        (1, AuditAction.ROTATION_STARTED.value),
        (2, AuditAction.KEY_VERIFIED.value),
        (3, AuditAction.KEY_ACTIVATED.value),
    ]
    assert events[1][3]["key_id"] == "es-1"
    assert "c2VjcmV0" not in str(events)
    assert backend.chain_holds()


def test_a_read_unit_writes_nothing(backend: Backend) -> None:
    with backend.units.write() as uow:
        _source(uow)
    with backend.units.read() as uow:
        uow.sources.require("web").last_error = "scribbled"
    with backend.units.read() as uow:
        assert uow.sources.require("web").last_error is None


def _write_source(units: UnitsOfWork) -> None:
    with units.write() as uow:
        _source(uow)


def test_a_fenced_writer_that_lost_the_lease_writes_nothing(backend: Backend) -> None:
    fence = RefusingFence()
    fenced = backend.units.fenced(fence)
    assert not fenced.lost
    with pytest.raises(LeaseLost):
        _write_source(fenced)
    assert fenced.lost
    assert fence.checks == 1
    assert not backend.units.lost
    with backend.units.read() as uow:
        assert uow.sources.list_sources(include_retired=True) == []
    _write_source(backend.units)  # the same store, unfenced, still writes
    with fenced.read() as uow:
        assert [s.name for s in uow.sources.list_sources()] == ["web"]


def test_units_in_a_held_block_commit_each_and_a_failed_one_is_undone(backend: Backend) -> None:
    units = backend.units
    with units.held():
        with units.write() as uow:
            _source(uow)
            row_id = _key(uow).id
        with units.read() as uow:  # the first unit is committed: another session sees it
            assert uow.sources.require("web").generation == 0
        with units.write() as uow:
            uow.sources.bump_generation("web", T0)
        with pytest.raises(RuntimeError, match="the step failed"):
            _fail_in_a_unit(units, row_id)
        with units.write() as uow:  # the failed unit's changes are gone from what it reads
            assert uow.sources.require("web").generation == 1
            row = uow.key_row(row_id)
            assert row is not None
            assert row.state is KeyState.PLANNED
            uow.keys.transition(row, KeyState.CREATING, T0)
    with units.read() as uow:
        assert uow.sources.require("web").generation == 1
        row = uow.key_row(row_id)
        assert row is not None
        assert row.state is KeyState.CREATING


def _fail_in_a_unit(units: UnitsOfWork, row_id: int) -> None:
    with units.write() as uow:
        uow.sources.bump_generation("web", T0)
        row = uow.key_row(row_id)
        assert row is not None
        uow.keys.transition(row, KeyState.CREATING, T0)
        raise RuntimeError("the step failed")
