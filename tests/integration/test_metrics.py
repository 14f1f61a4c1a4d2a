"""The metrics registry on SQLite and PostgreSQL: what the store holds, read at scrape time; the
counters fed from job reports; Elasticsearch requests counted by API and status; the schedule."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.clock import ManualClock
from rotator.config import ElasticsearchConfig
from rotator.elastic import ElasticKeyAuthority, client_from_config, set_request_observer
from rotator.errors import AuthorityUnavailable, ConfigError
from rotator.health import parse_listen, staleness_limit
from rotator.jobs.lifecycle import JobReport, Outcome
from rotator.jobs.purge import Outcome as PurgeOutcome
from rotator.jobs.purge import PurgeReport
from rotator.jobs.track import TrackReport
from rotator.metrics import Metrics, job_result
from rotator.model import Action, ActionKind, Reason
from rotator.service import job_specs, trigger_for
from rotator.states import KeyState
from rotator.store.db import make_engine
from rotator.store.models import ApiKey, PurgedKey, Source, TrackedKey

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: Metrics) -> Series:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, frozenset(labels.items())))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def metrics(migrated_engine: Engine, clock: ManualClock) -> Iterator[Metrics]:
    yield Metrics(migrated_engine, clock)
    set_request_observer(None)


def source(name: str, failures: int = 0, retired: bool = False) -> Source:
    return Source(
        name=name,
        spec_json={},
        spec_fingerprint="f" * 64,
        failure_count=failures,
        created_at=T0,
        updated_at=T0,
        retired_at=T0 if retired else None,
    )


def key(es_id: str, source: str, state: KeyState, generation: int, expires: datetime) -> ApiKey:
    return ApiKey(
        es_id=es_id,
        name=f"rotator-{source}-{generation}",
        source_name=source,
        generation=generation,
        state=state,
        planned_at=T0,
        updated_at=T0,
        expires_at=expires,
        renewal_at=expires - 10 * DAY,
    )


def tracked(es_id: str, key_class: str, state: str, *findings: str) -> TrackedKey:
    return TrackedKey(
        es_id=es_id,
        name=f"key {es_id}",
        key_type="rest",
        key_class=key_class,
        owner="bob",
        realm="native1",
        state=state,
        created_at=T0,
        roles_json={},
        metadata_json={},
        findings_json=[{"kind": f, "severity": "low", "detail": "x"} for f in findings],
        warned_json=[],
        first_seen_at=T0,
        last_seen_at=T0,
        sweep_id=1,
    )


def tombstone(es_id: str, outcome: str, reason: str = "expired") -> PurgedKey:
    return PurgedKey(
        es_id=es_id,
        name="k",
        owner="rotator",
        realm="native1",
        outcome=outcome,
        reason=reason,
        run_id="r1",
        purged_at=T0,
    )


def test_the_store_is_read_at_scrape_time(migrated_engine: Engine, metrics: Metrics) -> None:
    with Session(migrated_engine) as session, session.begin():
        session.add_all([source("web", failures=2), source("db"), source("gone", retired=True)])
        session.flush()
        session.add_all(
            [
                key("old-web", "web", KeyState.RETIRING, 1, T0 + 5 * DAY),
                key("new-web", "web", KeyState.ACTIVE, 2, T0 + 30 * DAY),
                key("failed-db", "db", KeyState.FAILED, 1, T0 + 40 * DAY),
                key("gone-1", "gone", KeyState.INVALIDATED, 1, T0 + DAY),
                tracked("a", "rotator", "active"),
                tracked("b", "user", "active", "no_expiration", "unrestricted"),
                tracked("c", "user", "active", "no_expiration"),
                tracked("d", "kibana-managed", "expired", "stale"),
                tracked("e", "user", "gone", "no_expiration"),  # no longer standing
                tombstone("t1", "invalidated"),
                tombstone("t2", "invalidated"),
                tombstone("t3", "error", "retired"),
            ]
        )

    series = scrape(metrics)

    assert value(series, "rotator_store_up") == 1
    expiry = {
        dict(labels)["source"]: v
        for (name, labels), v in series.items()
        if name == "rotator_key_expiry_timestamp_seconds"
    }
    assert expiry == {"web": (T0 + 30 * DAY).timestamp()}  # db has no active key
    assert value(series, "rotator_key_renewal_timestamp_seconds", source="web") == (
        (T0 + 20 * DAY).timestamp()
    )
    failures = {
        dict(labels)["source"]: v
        for (name, labels), v in series.items()
        if name == "rotator_source_consecutive_failures"
    }
    assert failures == {"web": 2, "db": 0}  # a retired source is not reported
    assert value(series, "rotator_inventory_keys", key_class="user", state="active") == 2
    assert value(series, "rotator_inventory_keys", key_class="user", state="gone") == 1
    assert value(series, "rotator_inventory_keys", key_class="rotator", state="active") == 1
    findings = {
        tuple(sorted(labels)): v
        for (name, labels), v in series.items()
        if name == "rotator_inventory_findings"
    }
    assert findings == {
        (("finding", "no_expiration"), ("key_class", "user")): 2,
        (("finding", "unrestricted"), ("key_class", "user")): 1,
        (("finding", "stale"), ("key_class", "kibana-managed")): 1,
    }
    assert value(series, "rotator_purge_tombstones", outcome="invalidated", reason="expired") == 2
    assert value(series, "rotator_purge_tombstones", outcome="error", reason="retired") == 1

    with Session(migrated_engine) as session, session.begin():  # read again at the next scrape
        session.get(Source, "web").failure_count = 0  # type: ignore[union-attr]
    assert value(scrape(metrics), "rotator_source_consecutive_failures", source="web") == 0


def test_a_store_that_does_not_answer_gives_store_up_0(tmp_path: Any, clock: ManualClock) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'rotator.db'}")
    try:
        metrics = Metrics(engine, clock)
        series = scrape(metrics)
    finally:
        engine.dispose()
        set_request_observer(None)
    assert value(series, "rotator_store_up") == 0
    assert value(series, "rotator_leader") == 0
    assert not any(name.startswith("rotator_key_") for name, _ in series)


def action(kind: ActionKind, source: str) -> Action:
    return Action(kind=kind, source=source, reason=Reason.FORCED, due_at=T0)


def test_job_reports_feed_the_counters(metrics: Metrics, clock: ManualClock) -> None:
    lifecycle = JobReport(
        outcomes=[
            Outcome(action(ActionKind.PROVISION, "web"), ok=True),
            Outcome(action(ActionKind.ROTATE, "db"), ok=False),
            Outcome(action(ActionKind.ROTATE, "db"), ok=True),
            Outcome(action(ActionKind.UPDATE, "web"), ok=True),
            Outcome(action(ActionKind.RETIRE, "db"), ok=True),
            Outcome(action(ActionKind.INVALIDATE_ORPHAN, "db"), ok=False),
            Outcome(action(ActionKind.HEALTH, "app"), ok=False),
        ]
    )
    purge = PurgeReport()
    purge.results[PurgeOutcome.INVALIDATED] = ["k1", "k2"]
    purge.results[PurgeOutcome.ERROR] = ["k3"]
    purge.errors["k3"] = "boom"
    track = TrackReport()
    track.transitions.update({"key_appeared": 2, "finding_raised": 1})

    metrics.observe_job("lifecycle", lifecycle, clock.monotonic(), raised=False)
    clock.advance(timedelta(seconds=7))
    metrics.observe_job("purge", purge, clock.monotonic() - 7, raised=False)
    metrics.observe_job("track", track, clock.monotonic(), raised=False)
    series = scrape(metrics)

    assert value(series, "rotator_provisions_total", source="web", result="ok") == 1
    assert value(series, "rotator_rotations_total", source="db", result="ok") == 1
    assert value(series, "rotator_rotations_total", source="db", result="failed") == 1
    assert value(series, "rotator_updates_total", source="web", result="ok") == 1
    assert value(series, "rotator_invalidations_total", source="db", result="ok") == 1
    assert value(series, "rotator_invalidations_total", source="db", result="failed") == 1
    assert value(series, "rotator_lifecycle_actions_total", action="health", result="failed") == 1
    assert value(series, "rotator_purge_keys_total", outcome="invalidated") == 2
    assert value(series, "rotator_purge_keys_total", outcome="error") == 1
    assert value(series, "rotator_inventory_transitions_total", transition="key_appeared") == 2
    assert value(series, "rotator_job_duration_seconds_sum", job_name="purge") == 7
    assert value(series, "rotator_job_duration_seconds_bucket", job_name="purge", le="5.0") == 0
    assert value(series, "rotator_job_duration_seconds_bucket", job_name="purge", le="10.0") == 1
    assert value(series, "rotator_job_last_success_timestamp_seconds", job_name="lifecycle") == (
        T0.timestamp()
    )
    assert value(series, "rotator_job_last_success_timestamp_seconds", job_name="track") == (
        (T0 + timedelta(seconds=7)).timestamp()
    )


def test_a_failed_or_stopped_run_is_no_success(metrics: Metrics, clock: ManualClock) -> None:
    metrics.observe_job("lifecycle", None, clock.monotonic(), raised=True)
    metrics.observe_job("track", TrackReport(error="sweep failed"), clock.monotonic(), raised=False)
    metrics.observe_job("purge", PurgeReport(stopped="lease lost"), clock.monotonic(), raised=False)
    series = scrape(metrics)

    for job, result in [("lifecycle", "failed"), ("track", "failed"), ("purge", "stopped")]:
        assert value(series, "rotator_job_runs_total", job_name=job, result=result) == 1
        assert value(series, "rotator_job_last_run_timestamp_seconds", job_name=job) == (
            T0.timestamp()
        )
    assert not any(n == "rotator_job_last_success_timestamp_seconds" for n, _ in series)
    assert metrics.last_run_of("purge") == T0
    assert job_result(JobReport(outcomes=[Outcome(action(ActionKind.ROTATE, "w"), ok=False)])) == (
        "ok"  # the run completed; the failed rotation shows in the action counters
    )


def test_the_lease_sets_the_leader_gauge_and_the_leadership_start(
    metrics: Metrics, clock: ManualClock
) -> None:
    metrics.observe_lease(True, ticked=True)
    clock.advance(timedelta(seconds=10))
    metrics.observe_lease(True, ticked=True)
    assert value(scrape(metrics), "rotator_leader") == 1
    assert metrics.leading_since == T0
    assert metrics.last_tick == T0 + timedelta(seconds=10)
    metrics.observe_lease(False, ticked=False)
    assert value(scrape(metrics), "rotator_leader") == 0
    assert metrics.leading_since is None
    assert metrics.last_tick == T0 + timedelta(seconds=10)


def test_the_schedule_of_each_registered_job(metrics: Metrics) -> None:
    from rotator.config import parse_config

    config = parse_config(
        "elasticsearch: {username: r, password_env: P}\n"
        "service: {schedule: {lifecycle: 30s, track: '0 */2 * * *', audit: null}}\n"
        "purge: {enabled: true}\n"
    )
    metrics.schedule.jobs = lambda: job_specs(config)
    series = scrape(metrics)
    intervals = {
        dict(labels)["job_name"]: v
        for (name, labels), v in series.items()
        if name == "rotator_job_interval_seconds"
    }
    assert intervals == {"lifecycle": 30, "track": 7200, "purge": 3600}
    specs = {s.id: s for s in job_specs(config)}
    assert staleness_limit(specs["lifecycle"], T0) == timedelta(seconds=2 * 30 + 15)
    assert staleness_limit(specs["track"], T0) == timedelta(hours=4, seconds=60)
    assert isinstance(trigger_for("0 */2 * * *"), CronTrigger)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_elasticsearch_calls_are_counted_by_api_and_status(metrics: Metrics) -> None:
    config = ElasticsearchConfig(
        hosts=[f"http://127.0.0.1:{free_port()}"], max_retries=0, username=None
    )
    authority = ElasticKeyAuthority(client_from_config(config))
    for _ in range(2):
        with pytest.raises(AuthorityUnavailable):
            authority.whoami()
    with pytest.raises(AuthorityUnavailable):
        authority.get(["some-key-id"])
    series = scrape(metrics)
    requests = {
        tuple(sorted(labels)): v
        for (name, labels), v in series.items()
        if name == "rotator_elasticsearch_requests_total"
    }
    assert requests == {
        (("endpoint", "security.authenticate"), ("status", "unreachable")): 2,
        (("endpoint", "security.query_api_keys"), ("status", "unreachable")): 1,
    }
    assert "some-key-id" not in generate_latest(metrics.registry).decode()


def test_no_label_can_carry_a_key_id_or_a_secret(metrics: Metrics) -> None:
    allowed = {
        "source",
        "result",
        "action",
        "job_name",
        "endpoint",
        "status",
        "transition",
        "outcome",
        "reason",
        "key_class",
        "state",
        "finding",
        "le",
    }
    labels = {
        label
        for family in metrics.registry.collect()
        for sample in family.samples
        for label in sample.labels
    }
    described = {
        label
        for collector in [metrics.store, metrics.schedule]
        for family in collector.collect()
        for label in getattr(family, "_labelnames", ())
    }
    assert (labels | described) <= allowed


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("10.0.0.1:0", ("10.0.0.1", 0)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_listen_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_listen(text) == address


@pytest.mark.parametrize("text", ["9464", ":9464", "host:", "host:http", "host:70000"])
def test_a_bad_listen_address_is_a_configuration_error(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_listen(text)
    assert caught.value.problems[0].startswith("service.listen: expected HOST:PORT")
