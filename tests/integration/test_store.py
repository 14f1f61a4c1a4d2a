"""Repositories and the lease on every backend: time is a parameter, secrets are never columns."""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from rotator.model import spec_fingerprint
from rotator.store.db import session_factory
from rotator.store.inventory import InventoryRepository
from rotator.store.lease import Lease, LeaseRepository
from rotator.store.models import (
    ApiKey,
    ApiKeyState,
    AuditEvent,
    Base,
    NaiveDatetimeError,
    RotationState,
    Source,
    UTCDateTime,
)
from rotator.store.repositories import (
    ApiKeyRepository,
    AuditRepository,
    IllegalTransition,
    RotationRepository,
    SourceRepository,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
SPEC = {"privileges": {"cluster": ["monitor"]}, "lifetime": "30d"}
SECRETISH = re.compile(r"secret|api_?key|encoded|password|token|credential", re.IGNORECASE)


def add_source(session: Session, name: str = "filebeat") -> Source:
    return SourceRepository(session).upsert_spec(name, SPEC, T0)


def add_key(
    session: Session,
    es_id: str | None,
    *,
    state: ApiKeyState = ApiKeyState.ACTIVE,
    source: str | None = "filebeat",
    generation: int = 1,
    renewal_at: datetime | None = None,
    retire_at: datetime | None = None,
) -> ApiKey:
    key = ApiKey(
        es_id=es_id,
        name=f"rotator-{source}-{generation}",
        source_name=source,
        generation=generation,
        state=state,
        planned_at=T0,
        updated_at=T0,
        renewal_at=renewal_at,
        retire_at=retire_at,
        secret_fingerprint="f" * 64,
    )
    return ApiKeyRepository(session).add(key)


def es_ids(keys: list[ApiKey]) -> list[str | None]:
    return [key.es_id for key in keys]


# --- what the store may hold ---------------------------------------------------------------------


def test_no_column_can_hold_a_secret(migrated_engine: Engine) -> None:
    inspector = sa.inspect(migrated_engine)
    migrated = {
        f"{table}.{column['name']}"
        for table in inspector.get_table_names()
        for column in inspector.get_columns(table)
    }
    modelled = {
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
    }

    secretish = {name for name in migrated | modelled if SECRETISH.search(name.split(".")[1])}

    assert secretish == {"api_keys.secret_fingerprint"}


def test_times_read_back_as_aware_utc(session: Session, migrated_engine: Engine) -> None:
    berlin = timezone(timedelta(hours=2))
    with session.begin():
        SourceRepository(session).upsert_spec("filebeat", SPEC, T0.astimezone(berlin))

    with session_factory(migrated_engine)() as fresh:
        source = fresh.get(Source, "filebeat")

    assert source is not None
    assert source.created_at == T0
    assert source.created_at.tzinfo is UTC


def test_naive_times_are_refused_by_the_column_type(session: Session) -> None:
    naive = datetime(2030, 1, 1, 12, 0)  # noqa: DTZ001 - the point of the test
    source = Source(
        name="x", spec_json={}, spec_fingerprint="0" * 64, created_at=naive, updated_at=naive
    )

    with session.begin():
        session.add(source)
        with pytest.raises(StatementError) as raised:
            session.flush()
        session.rollback()

    assert isinstance(raised.value.orig, NaiveDatetimeError)


def test_naive_times_are_refused_by_the_repositories(session: Session) -> None:
    naive = datetime(2030, 1, 1, 12, 0)  # noqa: DTZ001 - the point of the test
    with session.begin():
        with pytest.raises(NaiveDatetimeError):
            SourceRepository(session).upsert_spec("filebeat", SPEC, naive)
        with pytest.raises(NaiveDatetimeError):
            ApiKeyRepository(session).due_for_renewal(naive)
        with pytest.raises(NaiveDatetimeError):
            InventoryRepository(session).start_sweep("run", naive, "all", "rotator (native1)")
        with pytest.raises(NaiveDatetimeError):
            LeaseRepository(session).try_acquire("leader", "a", naive, timedelta(seconds=30))


def test_foreign_keys_are_enforced(session: Session) -> None:
    with pytest.raises(IntegrityError), session.begin():
        add_key(session, "k1", source="no-such-source")


def test_the_database_refuses_an_unknown_state(session: Session) -> None:
    insert = sa.text(
        "INSERT INTO api_keys (name, generation, state, planned_at, updated_at, jitter_seconds) "
        "VALUES ('k', 0, 'bogus', :at, :at, 0)"
    ).bindparams(sa.bindparam("at", type_=UTCDateTime()))

    with pytest.raises(IntegrityError), session.begin():
        session.execute(insert, {"at": T0})


# --- sources -------------------------------------------------------------------------------------


def test_upsert_spec_creates_then_changes_only_on_a_new_fingerprint(session: Session) -> None:
    repo = SourceRepository(session)
    with session.begin():
        created = repo.upsert_spec("filebeat", SPEC, T0)
        assert (created.generation, created.created_at, created.updated_at) == (0, T0, T0)
        assert created.spec_fingerprint == spec_fingerprint(dict(reversed(SPEC.items())))

        same = repo.upsert_spec("filebeat", SPEC, T0 + timedelta(hours=1))
        assert same.updated_at == T0

        changed = repo.upsert_spec("filebeat", {**SPEC, "lifetime": "7d"}, T0 + timedelta(hours=2))
        assert changed.updated_at == T0 + timedelta(hours=2)
        assert changed.spec_json["lifetime"] == "7d"
        assert changed.spec_fingerprint != spec_fingerprint(SPEC)


def test_sources_missing_from_the_config_retire_and_come_back(session: Session) -> None:
    repo = SourceRepository(session)
    with session.begin():
        add_source(session, "filebeat")
        add_source(session, "logstash")

        assert repo.retire_missing(["logstash"], T0 + timedelta(days=1)) == ["filebeat"]
        assert [s.name for s in repo.list_sources()] == ["logstash"]
        assert len(repo.list_sources(include_retired=True)) == 2

        revived = repo.upsert_spec("filebeat", SPEC, T0 + timedelta(days=2))
        assert revived.retired_at is None


@pytest.mark.parametrize(
    ("offset", "ready"),
    [(-TICK, False), (timedelta(0), True), (timedelta(seconds=1), True)],
    ids=["just-before", "at", "after"],
)
def test_a_failing_source_backs_off_until_next_attempt_at(
    session: Session, offset: timedelta, ready: bool
) -> None:
    repo = SourceRepository(session)
    retry_at = T0 + timedelta(minutes=5)
    with session.begin():
        add_source(session)
        failed = repo.record_failure("filebeat", "boom", now=T0, next_attempt_at=retry_at)
        assert (failed.failure_count, failed.last_error) == (1, "boom")

        names = [s.name for s in repo.ready_for_attempt(retry_at + offset)]
        assert names == (["filebeat"] if ready else [])

        reset = repo.reset_failures("filebeat", retry_at)
        assert (reset.failure_count, reset.last_error, reset.next_attempt_at) == (0, None, None)


def test_errors_are_stored_bounded(session: Session) -> None:
    with session.begin():
        add_source(session)
        source = SourceRepository(session).record_failure(
            "filebeat", "x" * 10_000, now=T0, next_attempt_at=T0
        )

    assert source.last_error is not None
    assert len(source.last_error) == 2000


def test_bump_generation(session: Session) -> None:
    with session.begin():
        add_source(session)
        assert SourceRepository(session).bump_generation("filebeat", T0) == 1
        assert SourceRepository(session).bump_generation("filebeat", T0) == 2


# --- api keys ------------------------------------------------------------------------------------

RENEWAL = T0 + timedelta(days=20)


@pytest.mark.parametrize(
    ("now", "due"),
    [
        (RENEWAL - TICK, []),
        (RENEWAL, ["active-due"]),
        (RENEWAL + timedelta(seconds=1), ["active-due"]),
        (RENEWAL + timedelta(days=5), ["active-due", "active-later"]),
    ],
    ids=["just-before", "at", "just-after", "both"],
)
def test_due_for_renewal_uses_the_given_now(
    session: Session, now: datetime, due: list[str]
) -> None:
    with session.begin():
        add_source(session)
        add_key(session, "active-later", renewal_at=RENEWAL + timedelta(days=1))
        add_key(session, "active-due", renewal_at=RENEWAL)
        add_key(session, "active-unscheduled")
        add_key(session, "delivered", state=ApiKeyState.DELIVERED, renewal_at=T0)
        add_key(session, "retiring", state=ApiKeyState.RETIRING, renewal_at=T0)

        assert es_ids(ApiKeyRepository(session).due_for_renewal(now)) == due


@pytest.mark.parametrize(
    ("offset", "due"),
    [(-TICK, []), (timedelta(0), ["old"]), (timedelta(hours=1), ["old"])],
    ids=["just-before", "at", "after"],
)
def test_retire_due_uses_the_given_now(session: Session, offset: timedelta, due: list[str]) -> None:
    retire_at = T0 + timedelta(hours=24)
    with session.begin():
        add_source(session)
        add_key(session, "old", state=ApiKeyState.RETIRING, retire_at=retire_at)
        add_key(session, "current", retire_at=retire_at)

        assert es_ids(ApiKeyRepository(session).retire_due(retire_at + offset)) == due


def test_current_key_is_the_active_one_of_the_highest_generation(session: Session) -> None:
    repo = ApiKeyRepository(session)
    with session.begin():
        add_source(session)
        assert repo.current_for_source("filebeat") is None
        add_key(session, "g1", generation=1)
        add_key(session, "g2", generation=2)
        add_key(session, "g3-delivered", generation=3, state=ApiKeyState.DELIVERED)

        current = repo.current_for_source("filebeat")
        assert current is not None
        assert current.es_id == "g2"
        assert es_ids(repo.for_source("filebeat", [ApiKeyState.DELIVERED])) == ["g3-delivered"]
        found = repo.get_by_es_id("g1")
        assert found is not None
        assert found.generation == 1


def test_a_key_walks_its_lifecycle_with_the_times_it_is_given(session: Session) -> None:
    repo = ApiKeyRepository(session)
    at = [T0 + timedelta(minutes=minute) for minute in range(8)]
    with session.begin():
        add_source(session)
        key = add_key(session, None, state=ApiKeyState.PLANNED)
        repo.transition(key, ApiKeyState.CREATING, at[1])
        repo.record_created(
            key,
            es_id="new-id",
            expires_at=at[0] + timedelta(days=30),
            renewal_at=at[0] + timedelta(days=20),
            secret_fingerprint="a" * 64,
            jitter_seconds=42,
            now=at[2],
        )
        repo.transition(key, ApiKeyState.VERIFIED, at[3])
        repo.transition(key, ApiKeyState.DELIVERED, at[4])
        repo.transition(key, ApiKeyState.ACTIVE, at[5])
        repo.schedule_retirement(key, retire_at=at[7], now=at[6])
        repo.transition(key, ApiKeyState.INVALIDATED, at[7])

    assert (key.es_id, key.created_at, key.jitter_seconds) == ("new-id", at[2], 42)
    assert (key.delivered_at, key.activated_at, key.retire_at) == (at[4], at[5], at[7])
    assert (key.invalidated_at, key.updated_at, key.state) == (at[7], at[7], "invalidated")


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (ApiKeyState.INVALIDATED, ApiKeyState.ACTIVE),
        (ApiKeyState.PLANNED, ApiKeyState.ACTIVE),
        (ApiKeyState.CREATED, ApiKeyState.DELIVERED),
        (ApiKeyState.ACTIVE, ApiKeyState.FAILED),
    ],
)
def test_illegal_key_transitions_are_refused(
    session: Session, start: ApiKeyState, to: ApiKeyState
) -> None:
    with session.begin():
        add_source(session)
        key = add_key(session, "k", state=start)
        with pytest.raises(IllegalTransition):
            ApiKeyRepository(session).transition(key, to, T0)
        assert key.state == start


def test_es_ids_are_unique_but_unknown_ones_may_repeat(session: Session) -> None:
    with session.begin():
        add_source(session)
        add_key(session, None, state=ApiKeyState.PLANNED)
        add_key(session, None, state=ApiKeyState.PLANNED)

    with session.begin():
        add_key(session, "dup")
        with pytest.raises(IntegrityError):
            add_key(session, "dup")
        session.rollback()


# --- rotations -----------------------------------------------------------------------------------


def test_a_rotation_starts_with_a_fresh_uuid4_and_finishes(session: Session) -> None:
    repo = RotationRepository(session)
    with session.begin():
        add_source(session)
        first = repo.start("filebeat", "expiring", T0, previous_key_es_id="old")
        second = repo.start("filebeat", "spec_changed", T0)

        assert uuid.UUID(first.id).version == 4
        assert first.id != second.id
        assert (first.state, first.started_at, first.finished_at) == ("planned", T0, None)
        assert [r.id for r in repo.unfinished("filebeat")] == sorted([first.id, second.id])

        repo.begin_attempt(first, T0)
        repo.advance(first, RotationState.CREATED, T0 + TICK, new_key_es_id="new")
        repo.advance(first, RotationState.COMPLETED, T0 + timedelta(hours=1))

        assert (first.attempt_count, first.new_key_es_id) == (1, "new")
        assert first.finished_at == T0 + timedelta(hours=1)
        assert [r.id for r in repo.unfinished()] == [second.id]
        with pytest.raises(IllegalTransition):
            repo.advance(first, RotationState.ACTIVE, T0 + timedelta(hours=2))


@pytest.mark.parametrize(
    ("offset", "due"), [(-TICK, False), (timedelta(0), True)], ids=["just-before", "at"]
)
def test_a_failed_attempt_waits_for_next_attempt_at(
    session: Session, offset: timedelta, due: bool
) -> None:
    repo = RotationRepository(session)
    retry_at = T0 + timedelta(minutes=2)
    with session.begin():
        add_source(session)
        rotation = repo.start("filebeat", "expiring", T0)
        repo.advance(rotation, RotationState.CREATED, T0)
        repo.fail(rotation, "timeout", now=T0, next_attempt_at=retry_at)

        assert (rotation.state, rotation.failure_count, rotation.last_error) == (
            "created",
            1,
            "timeout",
        )
        assert [r.id for r in repo.due_for_retry(retry_at + offset)] == (
            [rotation.id] if due else []
        )


def test_a_rotation_that_gives_up_fails_and_awaits_compensation(session: Session) -> None:
    repo = RotationRepository(session)
    with session.begin():
        add_source(session)
        rotation = repo.start("filebeat", "expiring", T0)
        repo.fail(rotation, "verification failed", now=T0, next_attempt_at=None)

        assert rotation.state == RotationState.FAILED
        assert [r.id for r in repo.due_for_retry(T0)] == [rotation.id]
        repo.advance(rotation, RotationState.COMPENSATED, T0 + TICK)
        assert repo.unfinished() == []
        got = repo.get(rotation.id)
        assert got is not None
        assert got.finished_at == T0 + TICK


# --- audit events --------------------------------------------------------------------------------


def event(prev_hash: str, hash_: str, seq: int | None = None) -> AuditEvent:
    return AuditEvent(
        seq=seq,
        at=T0,
        actor="rotator",
        action="key.create",
        subject="filebeat",
        outcome="success",
        details_json={"es_id": "k1"},
        prev_hash=prev_hash,
        hash=hash_,
    )


def chain(length: int) -> list[str]:
    return [f"{n:064x}" for n in range(length + 1)]


def test_audit_events_append_count_and_iterate_in_order(session: Session) -> None:
    repo = AuditRepository(session)
    hashes = chain(5)
    with session.begin():
        assert (repo.last(), repo.count(), repo.next_seq()) == (None, 0, 1)
        for prev, this in itertools.pairwise(hashes):
            repo.append(event(prev, this))

        last = repo.last()
        assert last is not None
        assert (last.seq, last.hash) == (5, hashes[5])
        assert repo.count() == 5
        assert repo.next_seq() == 6
        assert [e.seq for e in repo.iter_events(page_size=2)] == [1, 2, 3, 4, 5]
        assert [e.hash for e in repo.iter_events(after_seq=3)] == hashes[4:]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda h: event(h[2], h[1]), id="repeated-hash"),
        pytest.param(lambda h: event(h[0], h[3]), id="forked-chain"),
        pytest.param(lambda h: event(h[1], "abc"), id="short-hash"),
        pytest.param(lambda h: event(h[4], h[5], seq=1), id="reused-seq"),
    ],
)
def test_the_audit_table_refuses_a_broken_chain(
    session: Session, bad: Callable[[list[str]], AuditEvent]
) -> None:
    hashes = chain(5)
    repo = AuditRepository(session)
    with session.begin():
        repo.append(event(hashes[0], hashes[1]))

    with pytest.raises(IntegrityError), session.begin():
        repo.append(bad(hashes))


# --- leases --------------------------------------------------------------------------------------

TTL = timedelta(seconds=30)


def acquire(engine: Engine, holder: str, now: datetime, name: str = "leader") -> Lease | None:
    with session_factory(engine)() as session, session.begin():
        return LeaseRepository(session).try_acquire(name, holder, now, TTL)


def renew(engine: Engine, lease: Lease, now: datetime) -> Lease | None:
    with session_factory(engine)() as session, session.begin():
        return LeaseRepository(session).renew(lease, now, TTL)


def release(engine: Engine, lease: Lease, now: datetime) -> bool:
    with session_factory(engine)() as session, session.begin():
        return LeaseRepository(session).release(lease, now)


def test_a_live_lease_refuses_a_second_holder_until_it_expires(migrated_engine: Engine) -> None:
    a = acquire(migrated_engine, "replica-a", T0)
    assert a is not None
    assert (a.holder, a.epoch, a.acquired_at, a.expires_at) == ("replica-a", 1, T0, T0 + TTL)

    assert acquire(migrated_engine, "replica-b", T0 + TTL - TICK) is None

    b = acquire(migrated_engine, "replica-b", T0 + TTL)
    assert b is not None
    assert (b.holder, b.epoch, b.acquired_at) == ("replica-b", 2, T0 + TTL)
    assert renew(migrated_engine, a, T0 + TTL) is None
    assert acquire(migrated_engine, "replica-a", T0 + TTL + TICK) is None
    assert release(migrated_engine, a, T0 + TTL) is False


def test_the_holder_extends_its_live_lease_under_the_same_epoch(migrated_engine: Engine) -> None:
    a = acquire(migrated_engine, "replica-a", T0)
    assert a is not None

    again = acquire(migrated_engine, "replica-a", T0 + timedelta(seconds=10))
    renewed = renew(migrated_engine, a, T0 + timedelta(seconds=20))

    assert again is not None
    assert (again.epoch, again.acquired_at) == (1, T0)
    assert renewed is not None
    assert (renewed.epoch, renewed.renewed_at) == (1, T0 + timedelta(seconds=20))
    assert renewed.expires_at == T0 + timedelta(seconds=20) + TTL
    assert renewed.is_live(renewed.expires_at - TICK)
    assert not renewed.is_live(renewed.expires_at)


def test_an_expired_lease_cannot_be_renewed_and_retaking_it_bumps_the_epoch(
    migrated_engine: Engine,
) -> None:
    a = acquire(migrated_engine, "replica-a", T0)
    assert a is not None

    assert renew(migrated_engine, a, T0 + TTL) is None
    retaken = acquire(migrated_engine, "replica-a", T0 + TTL)

    assert retaken is not None
    assert retaken.epoch == 2


def test_a_released_lease_is_free_at_once(migrated_engine: Engine) -> None:
    a = acquire(migrated_engine, "replica-a", T0)
    assert a is not None

    assert release(migrated_engine, a, T0 + timedelta(seconds=1)) is True
    b = acquire(migrated_engine, "replica-b", T0 + timedelta(seconds=1))

    assert b is not None
    assert (b.holder, b.epoch) == ("replica-b", 2)


def test_leases_with_different_names_are_independent(migrated_engine: Engine) -> None:
    assert acquire(migrated_engine, "replica-a", T0, name="leader") is not None
    assert acquire(migrated_engine, "replica-b", T0, name="purge") is not None


def test_replicas_racing_for_a_lease_get_exactly_one_winner(migrated_engine: Engine) -> None:
    replicas = [f"replica-{n}" for n in range(6)]
    barrier = threading.Barrier(len(replicas))
    results: dict[str, Lease | None] = {}
    errors: list[BaseException] = []

    def race(holder: str) -> None:
        try:
            barrier.wait(timeout=10)
            results[holder] = acquire(migrated_engine, holder, T0)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(holder,)) for holder in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    winners = [lease for lease in results.values() if lease is not None]
    assert len(results) == len(replicas)
    assert len(winners) == 1
    assert winners[0].epoch == 1


def test_a_lease_needs_a_positive_ttl(session: Session) -> None:
    with session.begin(), pytest.raises(ValueError, match="positive ttl"):
        LeaseRepository(session).try_acquire("leader", "a", T0, timedelta(0))
