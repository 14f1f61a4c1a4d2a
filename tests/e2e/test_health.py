"""The health and metrics endpoint of a Service against the sandbox: /metrics after a whole
lifecycle (provision, rotation, retirement, a failing rotation, purge, track) parsed with the
Prometheus parser, /readyz following Elasticsearch, the lease and the jobs, and the alert rules
checked against what /metrics really carries."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from elasticsearch import Elasticsearch
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from rotator.clock import ManualClock, SystemClock
from rotator.config import parse_config
from rotator.sandbox import Sandbox
from rotator.sandbox.wire import Limits
from rotator.service import Service
from rotator.store import db
from rotator.store.models import ApiKey, ApiKeyState
from tests.e2e.conftest import ADMIN, ROTATOR_ROLE, SOURCES, World, config_text

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rotator-alerts.yml"
DAY = 86400.0

SEES_ALL = {**ROTATOR_ROLE, "cluster": [*ROTATOR_ROLE["cluster"], "read_security"]}
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(url: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - a test URL
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def scrape(service: Service) -> tuple[str, Series]:
    status, kind, text = get(service.health.url + "/metrics")
    assert status == 200
    assert kind.startswith("text/plain; version=")
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, series


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, frozenset(labels.items())))


def names(series: Series) -> set[str]:
    return {name for name, _ in series}


def ready(service: Service) -> tuple[int, dict[str, Any]]:
    status, kind, text = get(service.health.url + "/readyz")
    assert kind == "application/json"
    return status, json.loads(text)


@pytest.fixture
def served(world: World) -> Iterator[Service]:
    """A Service of the world with rotator allowed to see every key and the purge on, serving
    its endpoint on a free port."""
    world.admin().security.put_role(name="rotator", **SEES_ALL)
    world.config = parse_config(
        config_text(world.sandbox.url, world.out, str(world.engine.url))
        + "purge: {enabled: true}\n"
    )
    service = Service(world.config, world.engine, world.clock)
    assert service.health.start("127.0.0.1:0")
    yield service
    service.health.stop()


def advance(world: World, service: Service, delta: timedelta) -> None:
    """Move the clocks on; the lease expired meanwhile, so the service takes it again."""
    world.advance(delta)
    service.tick_lease()  # finds the lease expired: standby
    service.tick_lease()  # takes it again
    assert service.lease.leading


def expiration(world: World, key_id: str) -> float:
    key = world.admin().security.get_api_key(id=key_id)["api_keys"][0]
    return float(key["expiration"]) / 1000


def test_metrics_carry_every_series_with_the_values_of_a_whole_lifecycle(
    world: World, served: Service
) -> None:
    service = served
    service.tick_lease()
    assert service.lease.leading
    start = world.clock.now()

    service.run_job("lifecycle")  # provisions the three sources
    first = {s: world.delivered(s) for s in SOURCES}
    mine = Elasticsearch(world.sandbox.url, basic_auth=("rotator", world.password))
    # expired a day when the purge runs (Elasticsearch drops keys a week after they expire)
    scratch = mine.security.create_api_key(name="scratch", expiration="20d")["id"]
    forever = world.admin().security.create_api_key(name="forever")["id"]  # no expiration

    advance(world, service, timedelta(days=21))  # past renewal (lifetime 30d, rotate_before 10d)
    service.run_job("lifecycle")  # rotates the three
    service.run_job("purge")  # invalidates the expired scratch key
    advance(world, service, timedelta(hours=25))  # past the 24h overlap
    service.run_job("lifecycle")  # retires the three old keys
    second = {s: world.delivered(s) for s in SOURCES}
    world.admin().security.put_role(name="rotator", cluster=["monitor", "read_security"])
    advance(world, service, timedelta(days=20))  # past the next renewal: rotations now fail (403)
    service.run_job("lifecycle")
    world.admin().security.put_role(name="rotator", **SEES_ALL)
    service.run_job("track")

    text, series = scrape(service)

    # per source: the current key's expiry and renewal, the failures in a row
    with Session(world.engine) as session:
        active = {
            k.source_name: k
            for k in session.query(ApiKey).filter(ApiKey.state == ApiKeyState.ACTIVE)
        }
    for source in SOURCES:
        key_id = second[source][0]
        assert active[source].es_id == key_id
        assert value(series, "rotator_key_expiry_timestamp_seconds", source=source) == (
            expiration(world, key_id)
        )
        expires = (start + timedelta(days=51)).timestamp()  # rotated at day 21, for 30 days
        assert expiration(world, key_id) == pytest.approx(expires, abs=5)
        assert value(series, "rotator_key_renewal_timestamp_seconds", source=source) == (
            pytest.approx(expires - 10 * DAY, abs=5)  # rotate_before: 10d, jitter 0s
        )
        assert value(series, "rotator_source_consecutive_failures", source=source) == 1
        for counter, results in [
            ("rotator_provisions_total", {"ok": 1}),
            ("rotator_rotations_total", {"ok": 1, "failed": 1}),
            ("rotator_invalidations_total", {"ok": 1}),
        ]:
            for result, n in results.items():
                got = value(series, counter, source=source, result=result)
                assert got == n, (counter, source, result, got)
        assert value(series, "rotator_rotations_total", source=source, result="failed") == 1
    assert value(series, "rotator_lifecycle_actions_total", action="provision", result="ok") == 3
    assert value(series, "rotator_lifecycle_actions_total", action="rotate", result="ok") == 3
    assert value(series, "rotator_lifecycle_actions_total", action="rotate", result="failed") == 3
    assert value(series, "rotator_lifecycle_actions_total", action="retire", result="ok") == 3
    assert "rotator_updates_total" not in names(series)  # declared, never incremented
    assert "# TYPE rotator_updates_total counter" in text

    # the jobs: runs, durations, last success and last run, schedule
    now = world.clock.now().timestamp()
    assert value(series, "rotator_job_runs_total", job_name="lifecycle", result="ok") == 4
    assert value(series, "rotator_job_runs_total", job_name="track", result="ok") == 1
    assert value(series, "rotator_job_runs_total", job_name="purge", result="ok") == 1
    assert value(series, "rotator_job_duration_seconds_count", job_name="lifecycle") == 4
    assert value(series, "rotator_job_duration_seconds_bucket", job_name="track", le="+Inf") == 1
    for job in ("lifecycle", "track"):
        assert value(series, "rotator_job_last_success_timestamp_seconds", job_name=job) == now
        assert value(series, "rotator_job_last_run_timestamp_seconds", job_name=job) == now
    purged_at = (start + timedelta(days=21)).timestamp()
    assert value(series, "rotator_job_last_success_timestamp_seconds", job_name="purge") == (
        purged_at
    )
    assert value(series, "rotator_job_interval_seconds", job_name="lifecycle") == 60
    assert value(series, "rotator_job_interval_seconds", job_name="track") == 300
    assert value(series, "rotator_job_interval_seconds", job_name="purge") == 3600

    # Elasticsearch requests by API and status
    create = "security.create_api_key"
    assert value(series, "rotator_elasticsearch_requests_total", endpoint=create, status="200") == 6
    assert value(series, "rotator_elasticsearch_requests_total", endpoint=create, status="403") == 3
    assert value(
        series,
        "rotator_elasticsearch_requests_total",
        endpoint="security.invalidate_api_key",
        status="200",
    )
    endpoints = {dict(labels)["endpoint"] for name, labels in series if "requests_total" in name}
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", e) for e in endpoints), endpoints

    # the inventory by class and state, the findings standing, the purge
    assert value(series, "rotator_inventory_keys", key_class="user", state="active") == 1
    assert value(series, "rotator_inventory_findings", key_class="user", finding="no_expiration")
    assert value(series, "rotator_purge_keys_total", outcome="invalidated") == 1
    assert value(series, "rotator_purge_tombstones", outcome="invalidated", reason="expired") == 1
    rotator_keys = sum(
        v
        for (n, labels), v in series.items()
        if n == "rotator_inventory_keys" and ("key_class", "rotator") in labels
    )
    assert rotator_keys == 3  # the current keys: the others were invalidated before any sweep
    assert value(series, "rotator_leader") == 1
    assert value(series, "rotator_store_up") == 1

    # nothing secret, no key id
    secrets = {world.password, scratch, forever}
    for key_id, secret in [*first.values(), *second.values()]:
        secrets |= {key_id, secret}
    for path in world.out.iterdir():
        secrets |= set(path.read_text().strip().split(":"))
    leaked = sorted(s for s in secrets if s and s in text)
    assert leaked == []

    # every metric an alert rule uses is in the scrape
    groups = yaml.safe_load(RULES.read_text())["groups"]
    exprs = [r["expr"] for group in groups for r in group["rules"]]
    used = {m for e in exprs for m in re.findall(r"\brotator_[a-z_]+\b", e)}
    assert used >= {
        "rotator_key_expiry_timestamp_seconds",
        "rotator_source_consecutive_failures",
        "rotator_leader",
        "rotator_job_last_success_timestamp_seconds",
    }
    assert used <= names(series), used - names(series)


def test_a_standby_is_ready_and_says_so(world: World, served: Service) -> None:
    other = Service(world.config, world.engine, world.clock)
    other.lease.holder = "elsewhere:1"
    other.tick_lease()
    served.tick_lease()
    assert other.lease.leading
    assert not served.lease.leading

    status, body = ready(served)
    _, series = scrape(served)

    assert status == 200
    assert body["checks"]["role"] == {"ok": True, "detail": "standby"}
    assert body["checks"]["job.lifecycle"]["detail"] == "standby: the leader runs it"
    assert value(series, "rotator_leader") == 0
    assert "rotator_job_last_success_timestamp_seconds" not in names(series)


def test_readyz_names_a_silent_lease_and_stale_jobs(world: World, served: Service) -> None:
    served.tick_lease()
    served.run_job("lifecycle")
    served.run_job("track")
    served.run_job("purge")
    status, body = ready(served)
    assert (status, body["failed"]) == (200, [])
    assert body["status"] == "ready"
    assert set(body["checks"]) == {
        "store",
        "elasticsearch",
        "role",
        "job.lifecycle",
        "job.track",
        "job.purge",
    }
    assert body["checks"]["role"]["detail"] == "leader"

    world.advance(timedelta(minutes=3))  # lifecycle: 2 x 1m + 30s grace; the lease: 30s
    status, body = ready(served)
    assert status == 503
    assert body["status"] == "not ready"
    assert body["failed"] == ["role", "job.lifecycle"]
    assert body["checks"]["job.lifecycle"]["detail"] == "last ran 180s ago, more than 150s"
    assert body["checks"]["role"]["detail"].startswith("the leader lease was last tried 180s ago")

    served.tick_lease()
    served.run_job("lifecycle")
    assert ready(served)[0] == 200


def test_healthz_and_a_server_without_metrics(world: World) -> None:
    service = Service(world.config, world.engine, world.clock)
    assert service.health.start("127.0.0.1:0", metrics_enabled=False)
    try:
        assert get(service.health.url + "/healthz")[::2] == (200, "ok\n")
        assert get(service.health.url + "/metrics")[0] == 404
        assert get(service.health.url + "/nothing")[0] == 404
        status, body = ready(service)  # never ticked the lease: starting
        assert status == 503
        assert "role" in body["failed"]
        assert body["checks"]["role"]["detail"].startswith("starting")
    finally:
        service.health.stop()
    other = Service(world.config, world.engine, world.clock)
    assert other.health.start("127.0.0.1:0")
    try:  # a port in use is logged and the service runs on without the endpoint
        assert not service.health.start(f"127.0.0.1:{other.health.address[1]}")
    finally:
        other.health.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_readyz_follows_elasticsearch_going_away_and_coming_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, state = free_port(), tmp_path / "sandbox.json"
    start = datetime(2030, 1, 1, tzinfo=UTC)

    def sandbox() -> Sandbox:
        running = Sandbox.start(
            port=port,
            users=[(*ADMIN, "superuser")],
            state_file=state,
            limits=Limits(idle_timeout_s=0.3),  # a stopped sandbox closes kept-alive connections
        )
        running.set_clock(int(start.timestamp() * 1000))
        return running

    running = sandbox()
    admin = Elasticsearch(running.url, basic_auth=ADMIN)
    admin.security.put_role(name="rotator", **ROTATOR_ROLE)
    admin.security.put_user(username="rotator", password="rotator-pass-1", roles=["rotator"])
    running.save()
    monkeypatch.setenv("ROTATOR_TEST_ES_PASSWORD", "rotator-pass-1")
    store = f"sqlite:///{tmp_path / 'rotator.db'}"
    (tmp_path / "keys").mkdir()
    config = parse_config(config_text(running.url, tmp_path / "keys", store))
    engine = db.make_engine(store)
    db.upgrade(engine)
    clock = ManualClock(start)
    service = Service(config, engine, clock)
    try:
        service.tick_lease()
        service.run_job("lifecycle")
        service.run_job("track")
        assert service.health.start("127.0.0.1:0")
        assert ready(service)[0] == 200

        running.stop()
        SystemClock().sleep(1)  # the connection the client keeps alive idles out
        clock.advance(timedelta(seconds=6))  # past the cached answer
        status, body = ready(service)
        assert status == 503
        assert body["failed"] == ["elasticsearch"]
        assert "cannot reach Elasticsearch" in body["checks"]["elasticsearch"]["detail"]
        assert get(service.health.url + "/healthz")[0] == 200  # alive all the same

        running = sandbox()
        clock.advance(timedelta(seconds=6))
        status, body = ready(service)
        assert (status, body["failed"]) == (200, [])
    finally:
        service.health.stop()
        running.stop()
        engine.dispose()


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (apt install prometheus)")
    return found


def test_the_alert_rules_pass_promtool_check() -> None:
    check = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 8 rules found" in check.stdout


def alert(name: str, summary: str, **labels: str) -> dict[str, Any]:
    """An alert promtool must see firing: its labels (severity from the rules file) and its
    annotations (the summary as given, the description as the file has it)."""
    rule = next(
        r
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if r["alert"] == name
    )
    annotations = {"summary": summary}
    if "description" in rule["annotations"]:
        annotations["description"] = rule["annotations"]["description"].replace(
            "{{ $labels.source }}", labels.get("source", "")
        )
    return {
        "exp_labels": {"severity": rule["labels"]["severity"], **labels},
        "exp_annotations": annotations,
    }


def series_of(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"series": s, "values": v} for s, v in values.items()]


def test_the_alert_rules_fire_on_trouble_and_stay_quiet_otherwise(tmp_path: Path) -> None:
    """promtool test rules: two replicas (instances a and b) in trouble, then healthy, then
    gone altogether; one alert per source however many replicas report it."""
    every = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    trouble = series_of(
        {
            'rotator_key_expiry_timestamp_seconds{source="web", instance="a"}': "172800x200",
            'rotator_key_expiry_timestamp_seconds{source="web", instance="b"}': "172800x200",
            'rotator_key_expiry_timestamp_seconds{source="db", instance="a"}': "2592000x200",
            'rotator_source_consecutive_failures{source="web", instance="a"}': "3x200",
            'rotator_source_consecutive_failures{source="web", instance="b"}': "3x200",
            'rotator_source_consecutive_failures{source="db", instance="a"}': "0x200",
            'rotator_leader{instance="a"}': "0x200",
            'rotator_leader{instance="b"}': "0x200",
            'rotator_job_last_success_timestamp_seconds{job_name="lifecycle", instance="a"}': (
                "0x200"
            ),
            'rotator_job_interval_seconds{job_name="lifecycle", instance="a"}': "60x200",
            'rotator_job_interval_seconds{job_name="purge", instance="a"}': "3600x200",
            'rotator_store_up{instance="a"}': "1x200",
            'rotator_store_up{instance="b"}': "0x200",
        }
    )
    at_20m = {
        "RotatorKeyExpiresSoon": [
            alert(
                "RotatorKeyExpiresSoon",
                "The API key of source web expires in 1d 23h 40m 0s",
                source="web",
            )
        ],
        "RotatorRotationFailing": [
            alert(
                "RotatorRotationFailing",
                "Rotation of source web failed 3 times in a row",
                source="web",
            )
        ],
        "RotatorRotationFailingNearExpiry": [
            alert(
                "RotatorRotationFailingNearExpiry",
                "Source web cannot rotate and its key expires within two days",
                source="web",
            )
        ],
        "RotatorNoLeader": [
            alert(
                "RotatorNoLeader",
                "No rotator process has held the leader lease for 5 "
                "minutes: no key is being rotated",
            )
        ],
        "RotatorJobNotRun": [
            alert(
                "RotatorJobNotRun",
                "rotator's lifecycle job last completed 20m 0s ago",
                job_name="lifecycle",
            )
        ],
        "RotatorStoreUnavailable": [
            alert("RotatorStoreUnavailable", "rotator on b cannot read its store", instance="b")
        ],
    }
    healthy = series_of(
        {
            'rotator_key_expiry_timestamp_seconds{source="web", instance="a"}': "1728000x40",
            'rotator_source_consecutive_failures{source="web", instance="a"}': "0x40",
            'rotator_leader{instance="a"}': "1x40",
            'rotator_leader{instance="b"}': "0x40",
            'rotator_job_last_success_timestamp_seconds{job_name="lifecycle", instance="a"}': (
                "0+60x40"
            ),
            'rotator_job_interval_seconds{job_name="lifecycle", instance="a"}': "60x40",
            'rotator_store_up{instance="a"}': "1x40",
        }
    )
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": trouble,
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": name, "exp_alerts": at_20m.get(name, [])}
                    for name in every
                ]
                + [
                    {
                        "eval_time": "185m",
                        "alertname": "RotatorJobNeverCompleted",
                        "exp_alerts": [
                            alert(
                                "RotatorJobNeverCompleted",
                                "rotator's purge job is scheduled "
                                "but has not completed a run in 3 hours",
                                job_name="purge",
                            )
                        ],
                    }
                ],
            },
            {
                "interval": "1m",
                "input_series": healthy,
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": name, "exp_alerts": []} for name in every
                ],
            },
            {  # no rotator process reports anything
                "interval": "1m",
                "input_series": series_of({'up{job="rotator"}': "0x10"}),
                "alert_rule_test": [
                    {
                        "eval_time": "8m",
                        "alertname": "RotatorNoLeader",
                        "exp_alerts": at_20m["RotatorNoLeader"],
                    }
                ],
            },
        ],
    }
    path = tmp_path / "rotator-alerts.test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    run = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
