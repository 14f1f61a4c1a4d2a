"""The purge job against the sandbox: only the caller's own expired keys are invalidated, with
nothing more than manage_own_api_key (and the same with read_security added), in as few requests
as the batch size allows; the dry run is exact and sends no DELETE."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from sqlalchemy.orm import Session

from rotator import audit
from rotator.app import build_purger
from rotator.clock import ManualClock, SystemClock
from rotator.config import parse_config
from rotator.elastic import ElasticKeyAuthority
from rotator.jobs.purge import Outcome, Owner, Purger, PurgeSettings, purge_query
from rotator.model import ActionKind
from rotator.service import Service, job_specs
from rotator.store.models import ApiKey, ApiKeyState, AuditEvent, PurgedKey
from tests.cli_runner import in_process
from tests.e2e.conftest import World, config_text

OTHER = ("other", "other-password-1")
PURGE = (
    "purge:\n"
    "  enabled: true\n"
    "  batch_size: 2\n"
    "  exclude: {names: ['keep-*'], metadata: {retain: 'yes', team.tier: gold}}\n"
)
EXPIRED = ["old-1", "old-2", "old-3", "svc-old"]


def requests(world: World, method: str, route: str | None = None) -> int:
    return sum(
        r["count"]
        for r in world.sandbox.stats()["requests"]
        if r["method"] == method and (route is None or r["route"] == route)
    )


def deletes(world: World) -> int:
    """DELETE requests of any route, answered or failed by an injected fault."""
    return requests(world, "DELETE")


def setup_owners(world: World, cluster: list[str], purge: str = PURGE) -> Elasticsearch:
    """rotator holds ``cluster`` only; ``other`` holds manage_own_api_key. Returns rotator's
    client."""
    admin = world.admin()
    admin.security.put_role(name="rotator", cluster=cluster)
    admin.security.put_role(name="other", cluster=["manage_own_api_key"])
    admin.security.put_user(username=OTHER[0], password=OTHER[1], roles=["other"])
    world.config = parse_config(
        config_text(world.sandbox.url, world.out, str(world.engine.url)) + purge
    )
    return Elasticsearch(world.sandbox.url, basic_auth=("rotator", world.password))


def make(es: Elasticsearch, name: str, expiration: str | None, **metadata: Any) -> str:
    body: dict[str, Any] = {"name": name, "metadata": metadata}
    if expiration is not None:
        body["expiration"] = expiration
    return str(es.security.create_api_key(**body)["id"])


def seed(world: World, mine: Elasticsearch) -> dict[str, str]:
    """Keys of every kind, by name; the ones called EXPIRED are the purge's to take."""
    other = Elasticsearch(world.sandbox.url, basic_auth=OTHER)
    ids = {name: make(mine, name, "1d") for name in EXPIRED}
    ids["live"] = make(mine, "live", "30d")
    ids["forever"] = make(mine, "forever", None)
    ids["alerting"] = make(mine, "Alerting: .index-threshold/cpu", "1d")
    ids["managed"] = make(mine, "task", "1d", managed=True)
    ids["keep-1"] = make(mine, "keep-1", "1d")
    ids["retained"] = make(mine, "retained", "1d", retain="yes")
    ids["gold"] = make(mine, "gold", "1d", team={"tier": "gold"})
    ids["done"] = make(mine, "done", "1d")
    mine.security.invalidate_api_key(ids=[ids["done"]], owner=True)
    ids["theirs"] = make(other, "old-theirs", "1d")
    world.advance(timedelta(days=2))
    return ids


def invalidated(world: World) -> dict[str, bool]:
    keys = world.admin().security.query_api_keys(size=100)["api_keys"]
    return {k["id"]: k["invalidated"] for k in keys}


def purger(world: World) -> Purger:
    return build_purger(world.config, world.engine, world.clock)


@pytest.mark.parametrize(
    "cluster",
    [["manage_own_api_key"], ["manage_own_api_key", "read_security"]],
    ids=["manage_own_api_key", "with-read_security"],
)
def test_only_the_callers_expired_keys_are_invalidated(world: World, cluster: list[str]) -> None:
    mine = setup_owners(world, cluster)
    ids = seed(world, mine)
    expected = {ids[n] for n in EXPIRED}
    if "read_security" in cluster:  # the query API would otherwise see the other owner's keys
        seen = ElasticKeyAuthority(mine).iter_query({"match_all": {}})
        assert ids["theirs"] in {k.id for k in seen}

    world.sandbox.clear_stats()
    dry = purger(world).run(dry_run=True)
    assert deletes(world) == 0
    assert not dry.failed
    assert set(dry.selection.ids) == expected
    assert dry.selection.count == 4
    assert dict(dry.selection.by_owner) == {"rotator@default_native": 4}
    assert dict(dry.selection.by_prefix) == {"old-": 3, "svc-": 1}
    with Session(world.engine) as session:
        assert session.query(PurgedKey).count() == 0

    world.sandbox.clear_stats()
    report = purger(world).run()
    assert not report.failed, report.errors
    assert set(report.results[Outcome.INVALIDATED]) == set(dry.selection.ids)
    # One DELETE per batch, one query page per batch, one _authenticate.
    assert deletes(world) == math.ceil(len(expected) / 2)
    assert requests(world, "POST", "/_security/_query/api_key") == math.ceil(len(expected) / 2)
    state = invalidated(world)
    for name, key_id in ids.items():
        assert state[key_id] is (key_id in expected or name == "done"), name

    with Session(world.engine) as session:
        rows = {r.es_id: r for r in session.query(PurgedKey).all()}
        assert set(rows) == expected
        assert {(r.outcome, r.reason, r.run_id, r.owner) for r in rows.values()} == {
            ("invalidated", "expired", report.run_id, "rotator")
        }
        events = session.query(AuditEvent).filter(AuditEvent.action == "keys.purged").all()
        listed = [i for e in events for i in e.details_json["invalidated"]]
        assert sorted(listed) == sorted(expected)
        assert audit.verify(session).ok

    world.sandbox.clear_stats()
    again = purger(world).run()
    assert again.selection.count == 0
    assert not again.failed
    assert deletes(world) == 0


def test_include_managed_takes_kibana_managed_keys_too(world: World) -> None:
    mine = setup_owners(world, ["manage_own_api_key"], PURGE + "  include_managed: true\n")
    ids = seed(world, mine)
    report = purger(world).run()
    taken = set(report.results[Outcome.INVALIDATED])
    assert taken == {ids[n] for n in [*EXPIRED, "alerting", "managed"]}


def test_expired_for_and_limit(world: World) -> None:
    mine = setup_owners(world, ["manage_own_api_key"])
    ids = seed(world, mine)
    assert purger(world).run(dry_run=True, expired_for=timedelta(days=2)).selection.count == 0
    report = purger(world).run(limit=3)
    assert report.results[Outcome.INVALIDATED] == [ids[n] for n in EXPIRED[:3]]
    assert purger(world).run().results[Outcome.INVALIDATED] == [ids["svc-old"]]


def test_tombstones_are_deleted_after_the_retention_in_batches(world: World) -> None:
    mine = setup_owners(world, ["manage_own_api_key"], PURGE + "  retention: 3d\n")
    seed(world, mine)
    purger(world).run()
    world.advance(timedelta(days=3))
    assert purger(world).run().tombstones_deleted == 0  # kept for the whole retention
    world.advance(timedelta(seconds=1))
    report = purger(world).run()
    assert report.tombstones_deleted == 4
    with Session(world.engine) as session:
        assert session.query(PurgedKey).count() == 0
        events = session.query(AuditEvent).filter(AuditEvent.action == "purge.tombstones_deleted")
        assert [e.details_json["deleted"] for e in events] == [2, 2]


def test_rotators_retired_keys_whose_invalidation_failed_are_picked_up(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    world.advance(timedelta(days=20))
    lifecycle.run(world.specs)  # rotated; the old keys retire after the overlap
    world.advance(timedelta(hours=24))
    world.sandbox.add_faults([{"method": "DELETE", "path": "/_security/api_key", "status": 400}])
    report = lifecycle.run(world.specs)
    assert [o.action.kind for o in report.failed] == [ActionKind.RETIRE] * 3
    world.sandbox.clear_faults()
    with Session(world.engine) as session:
        retiring = {r.es_id for r in session.query(ApiKey).filter_by(state=ApiKeyState.RETIRING)}
    assert len(retiring) == 3
    world.advance(timedelta(days=9, hours=1))  # the old keys expire

    world.config = parse_config(
        config_text(world.sandbox.url, world.out, str(world.engine.url))
        + "purge: {enabled: true, exclude: {names: ['*']}}\n"
    )
    purge = purger(world).run()
    assert set(purge.results[Outcome.INVALIDATED]) == retiring
    with Session(world.engine) as session:
        rows = session.query(ApiKey).filter(ApiKey.es_id.in_(retiring)).all()
        assert {r.state for r in rows} == {ApiKeyState.INVALIDATED}
        assert {r.reason for r in session.query(PurgedKey).all()} == {"retired"}
    assert not any(invalidated(world)[k] is False for k in retiring)


def test_the_query_alone_sees_only_the_callers_keys_under_read_security(world: World) -> None:
    mine = setup_owners(world, ["manage_own_api_key", "read_security"])
    ids = seed(world, mine)
    authority = ElasticKeyAuthority(mine)
    owner = Owner.of(authority.whoami())
    query = purge_query(owner, world.clock.now(), PurgeSettings.of(world.config.purge))
    assert {k.id for k in authority.iter_query(query)} == {ids[n] for n in EXPIRED}


def test_the_command_line(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The command reads the real time: the keys are made three days before it.
    now = SystemClock().now()
    world.clock = ManualClock(now - timedelta(days=3))
    world.advance(timedelta(0))
    mine = setup_owners(world, ["manage_own_api_key"])
    ids = seed(world, mine)
    world.sandbox.set_clock(int(now.timestamp() * 1000))
    path = tmp_path / "rotator.yaml"
    text = config_text(world.sandbox.url, world.out, str(world.engine.url)) + PURGE
    path.write_text(text)
    run = in_process(capsys)
    world.sandbox.clear_stats()

    dry = run("--config", str(path), "purge", "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    listed = json.loads(dry.stdout)
    assert set(listed["selected"]["ids"]) == {ids[n] for n in EXPIRED}
    assert listed["selected"]["by_name_prefix"] == {"old-": 3, "svc-": 1}
    assert deletes(world) == 0

    table = run("--config", str(path), "purge", "--dry-run", "--expired-for", "30d")
    assert table.returncode == 0
    assert table.stdout.startswith("would invalidate 0 expired key(s) of rotator@default_native")

    limited = run("--config", str(path), "purge", "--limit", "1")
    assert limited.returncode == 0, limited.stderr
    assert "invalidated 1, previously invalidated 0" in limited.stdout

    world.sandbox.add_faults(
        [{"method": "DELETE", "path": "/_security/api_key", "status": 400, "times": 1}]
    )
    failed = run("--config", str(path), "purge", "-o", "json")
    assert failed.returncode == 1
    out = json.loads(failed.stdout)
    assert sorted(out["errors"]) == sorted(out["selected"]["ids"][:2])
    assert out["outcome"]["invalidated"] == out["selected"]["ids"][2:]

    done = run("--config", str(path), "once", "purge")
    assert done.returncode == 0, done.stderr
    assert "invalidated 2," in done.stdout
    assert run("--config", str(path), "purge", "--limit", "0").returncode == 2
    assert run("--config", str(path), "purge", "--expired-for", "soon").returncode == 2


def test_the_daemon_runs_the_purge_under_its_lease(world: World) -> None:
    mine = setup_owners(world, ["manage_own_api_key"])
    ids = seed(world, mine)
    service = Service(world.config, world.engine, world.clock)
    assert "purge" in [s.id for s in job_specs(world.config)]
    assert service.lease.try_acquire()
    service.run_job("purge")
    assert service.counts["failed:purge"] == 0
    state = invalidated(world)
    assert {i for i in ids.values() if state[i]} == {ids[n] for n in [*EXPIRED, "done"]}
    with Session(world.engine) as session:
        assert session.query(PurgedKey).count() == len(EXPIRED)
