"""Every event of a job run carries its run id and job; a run ends with one summary event; an
audit event commits with the change it records, or neither does."""

from __future__ import annotations

from datetime import timedelta

import pytest
import structlog
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from rotator.audit import AuditLog
from rotator.model import ActionKind
from rotator.store.models import ApiKey, ApiKeyState, AuditEvent
from rotator.vocabulary import AuditAction, LogEvent
from tests.e2e.conftest import SOURCES, World


def test_every_event_of_a_run_names_the_run_and_the_job(world: World) -> None:
    lifecycle = world.lifecycle()
    with structlog.testing.capture_logs() as logs:
        first = lifecycle.run(world.specs)
        world.advance(timedelta(days=20, minutes=1))
        second = lifecycle.run(world.specs)
    mine = [e for e in logs if e.get("job") == "lifecycle"]
    assert len(mine) == len(logs), [e for e in logs if "run_id" not in e]
    assert {e["run_id"] for e in logs} == {first.run_id, second.run_id}
    assert first.run_id != second.run_id
    summaries = [e for e in logs if e["event"] == LogEvent.JOB_FINISHED]
    assert [s["run_id"] for s in summaries] == [first.run_id, second.run_id]
    assert summaries[0]["counts"] == {"provision": {"ok": 3}}
    assert summaries[1]["counts"] == {"rotate": {"ok": 3}}
    assert summaries[1]["failed"] == 0
    assert summaries[1]["duration_s"] >= 0
    assert {e["event"] for e in logs} <= {str(v) for v in LogEvent}


def test_an_audit_event_that_cannot_be_written_takes_its_change_with_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    real = AuditLog._insert

    def refuse_activation(self: AuditLog, session: Session, now, entries):  # type: ignore[no-untyped-def]
        if any(e.action is AuditAction.KEY_ACTIVATED for e in entries):
            raise OperationalError("INSERT INTO audit_events", {}, Exception("disk full"))
        return real(self, session, now, entries)

    monkeypatch.setattr(AuditLog, "_insert", refuse_activation)
    report = lifecycle.run(world.specs, forced=["web"])
    assert [o.ok for o in report.outcomes if o.action.kind is ActionKind.ROTATE] == [False]
    monkeypatch.undo()
    with Session(world.engine) as session:
        active = [r for r in session.query(ApiKey).all() if r.state is ApiKeyState.ACTIVE]
        activated = session.query(AuditEvent).filter(AuditEvent.action == "key.activated").count()
    assert sorted(r.source_name for r in active) == sorted(SOURCES)
    assert activated == 3  # the first run's three; the refused one left no half-change behind
