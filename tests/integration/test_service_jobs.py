"""A job that fails is logged, redacted and counted, and never stops the scheduler."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import structlog
from sqlalchemy.engine import Engine

from rotator.clock import ManualClock
from rotator.config import parse_config
from rotator.service import Service

CONFIG = "elasticsearch: {username: rotator, password_env: ROTATOR_PASSWORD}\n"


def test_a_failing_job_is_logged_redacted_and_counted(
    migrated_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = Service(
        parse_config(CONFIG), migrated_engine, ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    )
    assert service.lease.try_acquire()

    def broken() -> object:
        raise RuntimeError("connection to postgresql://rotator:hunter2-secret@db/rotator failed")

    monkeypatch.setattr(service, "_lifecycle", broken)
    with structlog.testing.capture_logs() as logs:
        service.run_job("lifecycle")
        service.run_job("lifecycle")
    failed = [e for e in logs if e["event"] == "job_failed"]
    assert [e["failed_total"] for e in failed] == [1, 2]
    assert all("hunter2-secret" not in e["error"] for e in failed)
    assert failed[0]["error"].startswith("RuntimeError: ")
    assert service.counts["failed:lifecycle"] == 2


def test_a_standby_runs_no_job(migrated_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    leader = Service(parse_config(CONFIG), migrated_engine, clock)
    standby = Service(parse_config(CONFIG), migrated_engine, clock)
    leader.lease.holder, standby.lease.holder = "a:1", "b:2"
    leader.tick_lease()
    standby.tick_lease()
    assert leader.lease.leading
    assert not standby.lease.leading
    calls: list[str] = []
    monkeypatch.setattr(standby, "_lifecycle", lambda: calls.append("ran"))
    standby.run_job("lifecycle")
    assert calls == []


def test_a_reload_reschedules_adds_and_removes_jobs(migrated_engine: Engine) -> None:
    clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
    configs = iter(
        [
            parse_config(CONFIG + "service: {schedule: {lifecycle: null}}"),
            parse_config(CONFIG + "service: {schedule: {lifecycle: 5s}}"),
            parse_config(CONFIG + "service: {schedule: {lifecycle: 7s}}"),
        ]
    )
    service = Service(
        parse_config(CONFIG), migrated_engine, clock, load_config=lambda: next(configs)
    )
    scheduler = service.scheduler
    assert scheduler.get_job("lifecycle") is not None
    service.reload()  # lifecycle: null
    assert scheduler.get_job("lifecycle") is None
    service.reload()  # turned back on
    job = scheduler.get_job("lifecycle")
    assert job is not None
    assert job.trigger.interval.total_seconds() == 5
    service.reload()  # rescheduled
    assert scheduler.get_job("lifecycle").trigger.interval.total_seconds() == 7
