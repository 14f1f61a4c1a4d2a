"""The track job against the sandbox: keys made the way Kibana, Fleet and users make them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from elasticsearch import Elasticsearch

from rotator.app import build_tracker
from rotator.config import ManagedKeysConfig
from rotator.jobs.track import Tracker, TrackReport
from rotator.store.models import AuditEvent, TrackedKey
from tests.e2e.conftest import ROTATOR_ROLE, World

KIBANA_USER = ("kibana_admin_user", "kibana-user-password")


@pytest.fixture
def kibana(world: World) -> Iterator[Elasticsearch]:
    """A native user who owns the keys Kibana grants on its behalf."""
    admin = world.admin()
    admin.security.put_role(name="rule_author", cluster=["monitor"], indices=[])
    admin.security.put_user(username=KIBANA_USER[0], password=KIBANA_USER[1], roles=["rule_author"])
    return admin


def see_everything(world: World) -> None:
    """Give rotator's role read_security, as the README recommends for the track job."""
    role = {**ROTATOR_ROLE, "cluster": [*ROTATOR_ROLE["cluster"], "read_security"]}
    world.admin().security.put_role(name="rotator", **role)


def grant(admin: Elasticsearch, name: str, **body: Any) -> str:
    """A key granted for the Kibana user, the way Kibana's alerting and task manager do."""
    answer = admin.security.grant_api_key(
        grant_type="password",
        username=KIBANA_USER[0],
        password=KIBANA_USER[1],
        api_key={"name": name, **body},
    )
    return str(answer["id"])


def tracker(world: World, **settings: Any) -> Tracker:
    managed = ManagedKeysConfig.model_validate(settings) if settings else ManagedKeysConfig()
    config = world.config.model_copy(update={"managed_keys": managed})
    return build_tracker(config, world.engine, world.clock)


def rows(world: World) -> dict[str, TrackedKey]:
    with world.engine.connect() as conn:
        found = conn.execute(sa.select(TrackedKey)).all()
    return {r.es_id: r for r in found}  # type: ignore[attr-defined]


def events(world: World, prefix: str = "inventory.") -> list[tuple[str, dict[str, Any]]]:
    with world.engine.connect() as conn:
        found = conn.execute(
            sa.select(AuditEvent.action, AuditEvent.details_json).order_by(AuditEvent.seq)
        ).all()
    return [(a, d) for a, d in found if a.startswith(prefix)]


def actions_for(world: World, key_id: str) -> list[str]:
    return [a for a, d in events(world) if d.get("key_id") == key_id]


def sweep(world: World, **settings: Any) -> TrackReport:
    report = tracker(world, **settings).run()
    assert report.failed == [], report.failed
    return report


# --- classes -------------------------------------------------------------------------------------


def test_a_sweep_classifies_every_kind_of_key(world: World, kibana: Elasticsearch) -> None:
    see_everything(world)
    world.lifecycle().run(world.specs)
    alerting = grant(
        kibana, "Alerting: .es-query/High CPU", role_descriptors={}, metadata={"managed": True}
    )
    old_alerting = grant(kibana, "Alerting: .index-threshold/disk", role_descriptors={})
    task_manager = grant(kibana, "TaskManager: kibana_admin_user", metadata={"managed": True})
    reporting = grant(kibana, "Scheduled Reporting csv API Key", metadata={"managed": True})
    fleet = kibana.security.create_api_key(
        name="Default (a1b2c3)",
        role_descriptors={"fleet-apikey-enroll": {"cluster": [], "indices": []}},
        metadata={"managed_by": "fleet", "managed": True, "type": "enroll", "policy_id": "p1"},
    )["id"]
    script = kibana.security.create_api_key(name="nightly export")["id"]
    not_prefix = kibana.security.create_api_key(name="Not Alerting: look-alike")["id"]
    cross = kibana.perform_request(
        "POST",
        "/_security/cross_cluster/api_key",
        headers={"content-type": "application/json", "accept": "application/json"},
        body={"name": "ccs", "access": {"search": [{"names": ["logs-*"]}]}},
    )["id"]

    report = sweep(world)

    assert report.scope == "all"
    got = {k: (r.key_class, r.sub_kind) for k, r in rows(world).items()}
    assert got[alerting] == ("kibana-managed", "alerting")
    assert got[old_alerting] == ("kibana-managed", "alerting")
    assert got[task_manager] == ("kibana-managed", "task-manager")
    assert got[reporting] == ("kibana-managed", "reporting")
    assert got[fleet] == ("kibana-managed", "fleet")
    assert got[script] == ("user", None)
    assert got[not_prefix] == ("user", None)
    assert got[cross] == ("cross_cluster", None)
    assert sum(1 for c, _s in got.values() if c == "rotator") == 3
    stored = rows(world)[alerting]
    assert (stored.owner, stored.realm) == (KIBANA_USER[0], "default_native")
    assert stored.roles_json["unrestricted"] is True
    assert report.baseline
    assert [a for a, _d in events(world)] == ["inventory.baselined"]


def test_without_read_security_only_own_keys_are_seen_and_the_scope_says_so(
    world: World, kibana: Elasticsearch
) -> None:
    world.lifecycle().run(world.specs)
    other = grant(kibana, "Alerting: .es-query/rule", metadata={"managed": True})

    report = sweep(world)

    assert report.scope == "own"
    assert other not in rows(world)
    assert {r.key_class for r in rows(world).values()} == {"rotator"}

    see_everything(world)
    report = sweep(world)

    assert report.scope == "all"
    assert rows(world)[other].key_class == "kibana-managed"
    assert ("inventory.scope_changed", "all") in [(a, d.get("scope")) for a, d in events(world)]


def test_own_scope_does_not_call_other_owners_keys_deleted(
    world: World, kibana: Elasticsearch
) -> None:
    see_everything(world)
    other = grant(kibana, "Alerting: .es-query/rule", metadata={"managed": True})
    sweep(world)
    world.admin().security.put_role(name="rotator", **ROTATOR_ROLE)  # read_security taken away

    report = sweep(world)

    assert report.scope == "own"
    assert rows(world)[other].state == "active"
    assert "inventory.key_deleted" not in actions_for(world, other)


# --- transitions ---------------------------------------------------------------------------------


def test_each_lead_time_is_warned_once_then_expiry_and_deletion(
    world: World, kibana: Elasticsearch
) -> None:
    see_everything(world)
    sweep(world)  # the baseline
    key = grant(
        kibana, "Alerting: .es-query/expiring", expiration="20d", metadata={"managed": True}
    )

    sweep(world)
    assert actions_for(world, key) == ["inventory.key_appeared", "inventory.finding_raised"]

    world.advance(timedelta(days=7))  # 13 days left: the 14d lead time
    sweep(world)
    sweep(world)
    world.advance(timedelta(days=10, hours=12))  # 2.5 days left: the 3d lead time
    sweep(world)
    world.advance(timedelta(days=2))  # 12 hours left: the 1d lead time, the last one
    sweep(world)
    sweep(world)
    warnings = [
        (d["lead"], d["severity"])
        for a, d in events(world)
        if a == "inventory.key_expiring" and d["key_id"] == key
    ]
    assert warnings == [("14d", "warning"), ("3d", "warning"), ("1d", "critical")]

    world.advance(timedelta(hours=13))
    sweep(world)
    expired = [d for a, d in events(world) if a == "inventory.key_expired" and d["key_id"] == key]
    assert len(expired) == 1
    assert expired[0]["severity"] == "critical"
    assert rows(world)[key].state == "expired"

    world.advance(timedelta(days=8))  # past the remover's 7-day retention
    sweep(world)  # the remover runs on the next request; the key may go in this sweep or the next
    sweep(world)
    assert rows(world)[key].state == "gone"
    assert actions_for(world, key).count("inventory.key_deleted") == 1


def test_a_key_first_seen_close_to_expiry_gets_one_warning(
    world: World, kibana: Elasticsearch
) -> None:
    see_everything(world)
    sweep(world)
    key = grant(kibana, "TaskManager: someone", expiration="2d", metadata={"managed": True})

    sweep(world)
    sweep(world)

    leads = [d["lead"] for a, d in events(world) if a == "inventory.key_expiring"]
    assert leads == ["3d"]
    assert rows(world)[key].warned_json == [3 * 86400, 14 * 86400]


def test_an_invalidated_key_is_reported_once(world: World, kibana: Elasticsearch) -> None:
    see_everything(world)
    key = grant(kibana, "Alerting: .es-query/old", metadata={"managed": True})
    sweep(world)
    kibana.security.invalidate_api_key(ids=[key])

    sweep(world)
    sweep(world)

    assert actions_for(world, key) == ["inventory.key_invalidated"]
    assert rows(world)[key].state == "invalidated"


# --- policy findings -----------------------------------------------------------------------------


def findings(world: World, key_id: str) -> set[str]:
    return {f["kind"] for f in rows(world)[key_id].findings_json}


def test_policy_findings_appear_and_clear_as_keys_change(
    world: World, kibana: Elasticsearch
) -> None:
    see_everything(world)
    admin = world.admin()
    admin.security.put_role(name="key_owner", cluster=["manage_own_api_key"], indices=[])
    admin.security.put_user(username="temp", password="temp-password", roles=["key_owner"])
    temp = Elasticsearch(world.sandbox.url, basic_auth=("temp", "temp-password"))
    sweep(world, policy={"max_age": "30d"})
    forever = temp.security.create_api_key(name="forever")["id"]
    long_lived = temp.security.create_api_key(
        name="long",
        expiration="200d",
        role_descriptors={"r": {"indices": [{"names": ["a"], "privileges": ["read"]}]}},
    )["id"]

    sweep(world, policy={"max_age": "30d"})

    assert findings(world, forever) == {"no_expiration", "unrestricted"}
    assert findings(world, long_lived) == {"lifetime_exceeds"}
    raised = {
        (d["key_id"], d["finding"]) for a, d in events(world) if a == "inventory.finding_raised"
    }
    assert raised == {
        (forever, "no_expiration"),
        (forever, "unrestricted"),
        (long_lived, "lifetime_exceeds"),
    }

    temp.security.update_api_key(
        id=forever,
        role_descriptors={"r": {"indices": [{"names": ["a"], "privileges": ["read"]}]}},
    )
    sweep(world, policy={"max_age": "30d"})
    assert findings(world, forever) == {"no_expiration"}
    cleared = [d["finding"] for a, d in events(world) if a == "inventory.finding_cleared"]
    assert cleared == ["unrestricted"]

    admin.security.delete_user(username="temp")
    world.advance(timedelta(days=31))
    sweep(world, policy={"max_age": "30d"})
    assert findings(world, forever) == {"no_expiration", "stale", "owner_missing"}
    owner = next(
        d
        for a, d in events(world)
        if a == "inventory.finding_raised" and d["finding"] == "owner_missing"
    )
    assert owner["owner"] == "temp"
    assert "no longer exists" in owner["detail"]


def test_kibana_managed_keys_without_restrictions_are_a_lower_severity(
    world: World, kibana: Elasticsearch
) -> None:
    see_everything(world)
    managed = grant(
        kibana, "Alerting: .es-query/r", role_descriptors={}, metadata={"managed": True}
    )
    mine = kibana.security.create_api_key(name="script")["id"]

    sweep(world)

    by_id = rows(world)
    severity = {
        k: {f["kind"]: f["severity"] for f in by_id[k].findings_json} for k in (managed, mine)
    }
    assert severity[managed]["unrestricted"] == "low"
    assert severity[mine]["unrestricted"] == "high"


# --- rotator's own keys --------------------------------------------------------------------------


def as_rotator(world: World) -> Elasticsearch:
    return Elasticsearch(world.sandbox.url, basic_auth=("rotator", world.password))


def test_an_orphaned_rotator_key_is_invalidated_after_the_grace(world: World) -> None:
    world.lifecycle().run(world.specs)
    es = as_rotator(world)
    lost = es.security.create_api_key(
        name="rotator-web-lost", metadata={"managed_by": "rotator", "rotation_id": "gone-1"}
    )["id"]

    report = sweep(world)
    assert report.orphans_invalidated == []
    world.advance(timedelta(hours=2))
    fresh = es.security.create_api_key(
        name="rotator-web-fresh", metadata={"managed_by": "rotator", "rotation_id": "gone-2"}
    )["id"]
    report = sweep(world)

    assert report.orphans_invalidated == [lost]
    state = {k["id"]: k["invalidated"] for k in es.security.get_api_key(owner=True)["api_keys"]}
    assert state[lost] is True
    assert state[fresh] is False
    assert all(
        not state[r.es_id]
        for r in rows(world).values()
        if r.name.startswith("rotator-") and r.es_id not in (lost, fresh)
    )


def test_a_current_key_invalidated_elsewhere_is_handed_to_the_lifecycle(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    web_key = world.delivered("web")[0]
    world.admin().security.invalidate_api_key(ids=[web_key])
    handed: list[list[str]] = []
    config = world.config
    tracked = build_tracker(config, world.engine, world.clock, on_drift=handed.append)

    report = tracked.run()

    assert report.drifted == ["web"]
    assert handed == [["web"]]
    assert report.orphans_invalidated == []
    lifecycle.run(world.specs)
    assert world.delivered("web")[0] != web_key
    assert world.as_key("web").security.authenticate()["api_key"]["id"] != web_key


# --- scale ---------------------------------------------------------------------------------------


def test_a_sweep_of_a_few_thousand_mixed_keys_pages_once_per_page(
    world: World, kibana: Elasticsearch
) -> None:
    see_everything(world)
    made = {"kibana-managed": 0, "user": 0}
    for i in range(2400):
        if i % 3 == 0:
            grant(kibana, f"Alerting: .es-query/rule {i}", metadata={"managed": True})
            made["kibana-managed"] += 1
        else:
            kibana.security.create_api_key(name=f"shipper-{i}", expiration="10d")
            made["user"] += 1
    world.sandbox.clear_stats()
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()[:3]).upper())

    sa.event.listen(world.engine, "before_cursor_execute", count)
    try:
        report = sweep(world, page_size=480)
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", count)

    queries = [
        r["count"]
        for r in world.sandbox.stats()["requests"]
        if r["route"] == "/_security/_query/api_key"
    ]
    assert queries == [5]  # 2400 / 480: five full pages, and no empty sixth
    assert report.seen == 2400
    assert report.pages == 5
    assert dict(report.classes) == made
    assert report.findings["no_expiration"] == made["kibana-managed"]
    json.dumps(report.to_json())
    # Statements by the page, not by the key: 2400 keys in five pages, in the baseline sweep (all
    # inserts; 1600 expiry warnings) and in a steady one after a day (all updates).
    assert len(statements) <= 12 * report.pages + 20, Counter(statements)
    world.advance(timedelta(days=1))
    statements.clear()
    sa.event.listen(world.engine, "before_cursor_execute", count)
    try:
        again = sweep(world, page_size=480)
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", count)
    assert again.seen == 2400
    assert len(statements) <= 12 * again.pages + 20, Counter(statements)


# --- in the daemon -------------------------------------------------------------------------------


def test_the_daemon_runs_the_track_job_and_wakes_the_lifecycle_on_drift(world: World) -> None:
    from rotator.clock import wall_now
    from rotator.service import Service

    world.lifecycle().run(world.specs)
    world.admin().security.invalidate_api_key(ids=[world.delivered("db")[0]])
    service = Service(world.config, world.engine, world.clock)
    assert service.lease.try_acquire()
    lifecycle = service.scheduler.get_job("lifecycle")
    assert lifecycle is not None
    later = wall_now() + timedelta(hours=1)
    service.scheduler.modify_job("lifecycle", next_run_time=later)

    service.run_job("track")

    # Woken on the scheduler's own (real) time, whatever clock the jobs use.
    assert service.scheduler.get_job("lifecycle").next_run_time <= wall_now()
    assert {r.key_class for r in rows(world).values()} == {"rotator"}
    assert service.counts["failed:track"] == 0


def test_transitions_and_findings_go_to_the_notifier_with_one_key_per_condition(
    world: World, kibana: Elasticsearch
) -> None:
    from rotator.notify import Notice

    heard: list[Notice] = []

    class Capture:
        def notify(self, notice: Notice) -> None:
            heard.append(notice)

    see_everything(world)
    sweep(world)
    key = grant(kibana, "Alerting: .es-query/n", expiration="2d", metadata={"managed": True})
    tracker = build_tracker(world.config, world.engine, world.clock, notifier=Capture())
    tracker.run()
    tracker.run()

    kinds = sorted((n.kind.value, n.severity.value) for n in heard)
    assert kinds == [
        ("managed_key_appeared", "info"),
        ("managed_key_expiring", "warning"),
        ("policy_finding", "low"),
    ]
    assert {n.subject for n in heard} == {f"key:{key}"}
    assert len({n.dedup_key for n in heard}) == 3
    assert all(n.details["job"] == "track" for n in heard)
