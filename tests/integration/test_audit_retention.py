"""Retention on SQLite and PostgreSQL: only events a checkpoint covers can be removed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from rotator.audit import AuditLog, apply_retention, verify
from rotator.store.models import AuditCheckpoint, AuditEvent
from rotator.vocabulary import AuditAction, AuditOutcome

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def write(engine: Engine, n: int) -> None:
    log = AuditLog(sessionmaker(engine), actor="test")
    for i in range(n):
        log.record(
            now=T0 + timedelta(days=i),
            action=AuditAction.KEY_ACTIVATED,
            subject="web",
            outcome=AuditOutcome.SUCCESS,
            details={"i": i},
        )


def test_retention_removes_behind_a_checkpoint_and_the_chain_goes_on(
    migrated_engine: Engine,
) -> None:
    write(migrated_engine, 10)
    with Session(migrated_engine) as session, session.begin():
        removed = apply_retention(
            session, before=T0 + timedelta(days=4), now=T0 + timedelta(days=20)
        )
    assert removed == 4
    write(migrated_engine, 2)  # chains on from the kept tail

    with Session(migrated_engine) as session:
        seqs = session.scalars(sa.select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        checkpoint = session.scalars(sa.select(AuditCheckpoint)).one()
        result = verify(session)
    assert seqs == list(range(5, 13))
    assert (checkpoint.seq, checkpoint.removed) == (4, 4)
    assert result.ok
    assert result.events == 8


def test_retention_can_stop_before_what_a_copy_lacks(migrated_engine: Engine) -> None:
    write(migrated_engine, 10)
    with Session(migrated_engine) as session, session.begin():
        removed = apply_retention(
            session, before=T0 + timedelta(days=30), now=T0 + timedelta(days=30), up_to=3
        )
    assert removed == 3


def test_an_event_no_checkpoint_covers_cannot_be_deleted(migrated_engine: Engine) -> None:
    write(migrated_engine, 3)
    with Session(migrated_engine) as session, session.begin():
        apply_retention(session, before=T0 + timedelta(days=1), now=T0)

    with pytest.raises(sa.exc.DatabaseError, match="append-only"), migrated_engine.begin() as c:
        c.execute(sa.delete(AuditEvent).where(AuditEvent.seq == 3))
    with (
        pytest.raises(sa.exc.DatabaseError, match="cannot be changed"),
        migrated_engine.begin() as c,
    ):
        c.execute(sa.delete(AuditCheckpoint))
