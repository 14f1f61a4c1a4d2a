"""The daemon's wiring as data: job ids, triggers, options and next fire times; the preflight."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from rotator.config import parse_config
from rotator.service import (
    LEASE_JOB,
    build_scheduler,
    job_specs,
    missing_privileges,
    preflight_request,
)

NOW = datetime(2030, 1, 1, 12, 0, 7, tzinfo=UTC)
CREDENTIALS = "elasticsearch: {username: rotator, password_env: ROTATOR_PASSWORD}\n"


def _noop(*_args: object) -> None:
    return None


def jobs_of(text: str) -> dict[str, Any]:
    """The jobs as the scheduler holds them once started (paused: nothing ever runs)."""
    scheduler = build_scheduler(
        parse_config(CREDENTIALS + text), _noop, _noop, NOW, BackgroundScheduler
    )
    scheduler.start(paused=True)
    try:
        return {job.id: job for job in scheduler.get_jobs()}
    finally:
        scheduler.shutdown(wait=False)


def test_defaults_register_the_lifecycle_every_minute_and_the_lease_tick() -> None:
    jobs = jobs_of("")
    assert sorted(jobs) == sorted([LEASE_JOB, "lifecycle", "track"])  # purge is off by default
    assert jobs["track"].trigger.interval == timedelta(minutes=5)
    life = jobs["lifecycle"]
    assert isinstance(life.trigger, IntervalTrigger)
    assert life.trigger.interval == timedelta(minutes=1)
    assert life.max_instances == 1
    assert life.coalesce is True
    assert life.misfire_grace_time == 30
    lease = jobs[LEASE_JOB]
    assert lease.trigger.interval == timedelta(seconds=10)  # ttl 30s / 3
    assert lease.next_run_time == NOW


def test_short_durations_for_trials() -> None:
    jobs = jobs_of("service: {lease_ttl: 6s, schedule: {lifecycle: 2s}}")
    life = jobs["lifecycle"]
    assert life.trigger.interval == timedelta(seconds=2)
    assert life.misfire_grace_time == 1
    assert jobs[LEASE_JOB].trigger.interval == timedelta(seconds=2)
    first = life.next_run_time
    assert life.trigger.get_next_fire_time(first, first) == first + timedelta(seconds=2)


def test_a_cron_schedule_fires_at_its_times_in_utc() -> None:
    jobs = jobs_of("service: {schedule: {lifecycle: '*/15 * * * *'}}")
    trigger = jobs["lifecycle"].trigger
    assert isinstance(trigger, CronTrigger)
    assert trigger.get_next_fire_time(None, NOW) == datetime(2030, 1, 1, 12, 15, tzinfo=UTC)


def test_a_job_turned_off_is_not_registered() -> None:
    assert "lifecycle" not in jobs_of("service: {schedule: {lifecycle: null}}")
    off = parse_config(CREDENTIALS + "service: {schedule: {lifecycle: null, track: null}}")
    assert [s.id for s in job_specs(off)] == []


def test_a_job_whose_section_is_disabled_is_not_registered_whatever_its_schedule() -> None:
    assert "track" not in jobs_of("managed_keys: {enabled: false}")
    assert "track" in jobs_of("managed_keys: {enabled: true}")


SOURCES = """
sources:
  - name: web
    preset: logs-writer
    dataset: web
    deliver: [{type: file, path: /tmp/web.key}]
  - name: ilm
    privileges:
      cluster: [read_ilm]
      indices: [{names: [logs-ilm-default], privileges: [create_doc]}]
    deliver: [{type: file, path: /tmp/ilm.key}]
"""


def test_the_preflight_asks_for_everything_rotator_needs_and_delegates() -> None:
    body = preflight_request(parse_config(CREDENTIALS + SOURCES))
    assert body["cluster"] == ["manage_own_api_key", "monitor", "read_ilm"]
    assert {"names": ["logs-ilm-default"], "privileges": ["create_doc"]} in body["index"]
    assert {"names": ["logs-web-default"], "privileges": ["auto_configure", "create_doc"]} in body[
        "index"
    ]


def test_each_missing_privilege_is_one_line_naming_the_source() -> None:
    config = parse_config(CREDENTIALS + SOURCES)
    answer = {
        "cluster": {"manage_own_api_key": True, "monitor": True, "read_ilm": False},
        "index": {
            "logs-web-default": {"create_doc": True, "auto_configure": False},
            "logs-ilm-default": {"create_doc": True},
        },
    }
    assert missing_privileges(config, answer) == [
        "sources.web: rotator's role lacks auto_configure on logs-web-default, which the "
        "source's key is given (Elasticsearch would silently leave it out)",
        "sources.ilm: rotator's role lacks cluster privilege read_ilm, which the source's key "
        "is given (Elasticsearch would silently leave it out)",
    ]
    answer["cluster"]["manage_own_api_key"] = False
    assert missing_privileges(config, answer)[0].startswith(
        "rotator's role lacks cluster privilege manage_own_api_key"
    )
