"""The leader lease on both stores: one holder, renewal, release, and fenced writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.clock import ManualClock
from rotator.errors import DependencyUnavailable, LeaseLost
from rotator.leader import LeaderLease
from rotator.store.db import session_factory
from rotator.store.models import AuditEvent

TTL = timedelta(seconds=30)
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def actions(engine: Engine) -> list[tuple[str, dict[str, object]]]:
    with Session(engine) as session:
        return [
            (e.action, e.details_json) for e in session.query(AuditEvent).order_by(AuditEvent.seq)
        ]


def fenced_write(lease: LeaderLease, engine: Engine, clock: ManualClock) -> None:
    with session_factory(engine).begin() as session:
        lease.check(session, clock.now())


def test_one_holder_at_a_time_and_the_refusal_names_it(migrated_engine: Engine) -> None:
    clock = ManualClock(T0)
    first = LeaderLease(migrated_engine, clock, TTL, holder="host-a:1")
    second = LeaderLease(migrated_engine, clock, TTL, holder="host-b:2")
    assert first.try_acquire()
    assert not second.try_acquire()
    with pytest.raises(DependencyUnavailable) as refused:
        second.acquire_or_raise()
    assert "host-a:1 (epoch 1) until 2030-01-01T00:00:30Z" in refused.value.message
    assert refused.value.exit_code == 3
    assert [a for a, _d in actions(migrated_engine)] == ["leader.acquired"]


def test_renewal_keeps_the_lease_past_its_first_ttl(migrated_engine: Engine) -> None:
    clock = ManualClock(T0)
    leader = LeaderLease(migrated_engine, clock, TTL, holder="a:1")
    other = LeaderLease(migrated_engine, clock, TTL, holder="b:2")
    leader.try_acquire()
    for _ in range(5):
        clock.advance(TTL / 3)
        assert leader.renew()
        assert not other.try_acquire()
    fenced_write(leader, migrated_engine, clock)


def test_a_write_after_the_lease_was_taken_over_is_refused(migrated_engine: Engine) -> None:
    clock = ManualClock(T0)
    changes: list[bool] = []
    stalled = LeaderLease(migrated_engine, clock, TTL, holder="a:1", on_change=changes.append)
    stalled.try_acquire()
    clock.advance(TTL + timedelta(seconds=1))  # it was paused longer than the lease
    successor = LeaderLease(migrated_engine, clock, TTL, holder="b:2")
    assert successor.try_acquire()
    assert successor.lease is not None
    assert successor.lease.epoch == 2
    with pytest.raises(LeaseLost):
        fenced_write(stalled, migrated_engine, clock)
    assert stalled.lost
    assert not stalled.leading
    assert changes == [True, False]
    fenced_write(successor, migrated_engine, clock)
    stalled.audit_loss()  # what the job does once the refused write has rolled back
    lost = [d for a, d in actions(migrated_engine) if a == "leader.lost"]
    assert lost
    assert lost[0]["holder"] == "a:1"
    assert lost[0]["epoch"] == 1


def test_an_expired_lease_cannot_be_written_under_even_before_a_takeover(
    migrated_engine: Engine,
) -> None:
    clock = ManualClock(T0)
    leader = LeaderLease(migrated_engine, clock, TTL, holder="a:1")
    leader.try_acquire()
    clock.advance(TTL)
    with pytest.raises(LeaseLost):
        fenced_write(leader, migrated_engine, clock)
    assert not leader.renew()


def test_release_lets_another_take_over_at_once_with_the_next_epoch(
    migrated_engine: Engine,
) -> None:
    clock = ManualClock(T0)
    leader = LeaderLease(migrated_engine, clock, TTL, holder="a:1")
    other = LeaderLease(migrated_engine, clock, TTL, holder="b:2")
    leader.try_acquire()
    leader.release()
    assert other.try_acquire()
    assert other.lease is not None
    assert other.lease.epoch == 2
    assert [a for a, _d in actions(migrated_engine)] == [
        "leader.acquired",
        "leader.released",
        "leader.acquired",
    ]
