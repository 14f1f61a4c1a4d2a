"""Every failure branch of a rotation, driven through the sandbox's fault injection and real sinks.

Whatever fails after a key was created, the key is settled (invalidated when no sink took it),
the failure is counted with a backoff, and no valid key is left that nobody tracks.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
import structlog
from elasticsearch import Elasticsearch
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from rotator.config import parse_config
from rotator.elastic import ElasticKeyAuthority, client_from_config
from rotator.model import ActionKind, specs_from_config
from rotator.store.models import ApiKey, ApiKeyState, AuditEvent, Rotation, Source
from rotator.store.repositories import ApiKeyRepository
from tests.e2e.conftest import SOURCES, World, config_text


def valid_untracked(world: World) -> set[str]:
    """Valid rotator keys that the store does not track as active or retiring."""
    now_ms = world.sandbox.now_ms()
    valid = {
        k["id"]
        for k in world.admin().security.get_api_key(username="rotator")["api_keys"]
        if not k["invalidated"] and k.get("expiration", now_ms + 1) > now_ms
    }
    with Session(world.engine) as session:
        tracked = {
            r.es_id
            for r in session.query(ApiKey).all()
            if r.state in (ApiKeyState.ACTIVE, ApiKeyState.RETIRING)
        }
    return valid - tracked


def source_row(world: World, name: str) -> Source:
    with Session(world.engine) as session:
        row = session.get(Source, name)
        assert row is not None
        session.expunge(row)
        return row


def audit_actions(world: World) -> list[tuple[str, str, dict[str, Any]]]:
    with Session(world.engine) as session:
        return [
            (e.subject, e.action, e.details_json)
            for e in session.query(AuditEvent).order_by(AuditEvent.seq)
        ]


class Breaking:
    """The real authority, with one call made to raise what a buggy dependency might."""

    def __init__(self, inner: ElasticKeyAuthority, method: str, error: Exception) -> None:
        self._inner, self._method, self._error = inner, method, error

    def __getattr__(self, name: str) -> Any:
        if name == self._method:

            def broken(*args: Any, **kwargs: Any) -> Any:
                raise self._error

            return broken
        return getattr(self._inner, name)


def real_authority(world: World) -> ElasticKeyAuthority:
    return ElasticKeyAuthority(client_from_config(world.config.elasticsearch))


# --- item 3: unexpected exceptions after create ----------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ValueError("embedded null byte"),
        KeyError("api_key"),
        OperationalError("SELECT 1", {}, Exception("database is locked")),
    ],
    ids=["ValueError", "KeyError", "OperationalError"],
)
def test_an_unexpected_exception_after_create_compensates_and_backs_off(
    world: World, error: Exception
) -> None:
    broken = Breaking(real_authority(world), "check_privileges", error)
    report = world.lifecycle(authority=broken).run(world.specs)
    assert {o.action.source for o in report.failed} == set(SOURCES)
    assert all(o.detail == f"unexpected {type(error).__name__}" for o in report.failed)
    assert not valid_untracked(world), "a created key was left valid and untracked"
    for name in SOURCES:
        row = source_row(world, name)
        assert row.failure_count == 1
        assert row.next_attempt_at is not None
    with Session(world.engine) as session:
        states = {r.state for r in session.query(ApiKey).all()}
    assert states == {ApiKeyState.INVALIDATED}


def test_a_store_error_after_a_sink_took_the_key_keeps_the_key(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    old = world.delivered("web")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("UPDATE api_keys", {}, Exception("disk I/O error"))

    monkeypatch.setattr(ApiKeyRepository, "add_receipt", broken)
    report = lifecycle.run(world.specs, forced=["web"])
    assert [o.ok for o in report.outcomes if o.action.kind is ActionKind.ROTATE] == [False]
    monkeypatch.undo()
    taken = world.delivered("web")
    assert taken != old
    me = Elasticsearch(world.sandbox.url, api_key=taken).security.authenticate()
    assert me["api_key"]["id"] == taken[0]  # the file holds it: it must stay valid
    lifecycle.run(world.specs)  # past the backoff: a newer key reaches the sink
    assert not valid_untracked(world)


# --- item 4: transient reads, duplicate creates ----------------------------------------------


def test_one_transient_read_error_does_not_abort_the_run(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    world.advance(timedelta(days=20, minutes=1))  # past renewal, whatever the set-up took
    world.sandbox.add_faults([{"path": "/_security/_query/api_key", "status": 503, "times": 1}])
    report = lifecycle.run(world.specs)  # max_retries: 0 in the config: rotator retries itself
    assert not report.failed, [o.detail for o in report.failed]
    assert sorted(o.action.kind for o in report.outcomes) == [ActionKind.ROTATE] * 3


def test_a_lost_create_answer_leaves_no_duplicate_key(world: World) -> None:
    text = config_text(world.sandbox.url, world.out, str(world.engine.url)).replace(
        "max_retries: 0", "max_retries: 3"
    )
    specs = specs_from_config(parse_config(text))
    world.config = parse_config(text)
    world.sandbox.add_faults(
        [{"method": "PUT", "path": "/_security/api_key", "truncate": True, "times": 2}]
    )
    report = world.lifecycle().run(specs)
    assert not valid_untracked(world), "a key whose answer was lost is still valid"
    keys = world.admin().security.get_api_key(username="rotator")["api_keys"]
    valid = [k for k in keys if not k["invalidated"]]
    assert len(valid) == len([o for o in report.outcomes if o.ok])
    world.lifecycle().run(specs)
    assert not valid_untracked(world)
    with Session(world.engine) as session:
        active = [r for r in session.query(ApiKey).all() if r.state is ApiKeyState.ACTIVE]
    assert sorted(r.source_name for r in active) == sorted(SOURCES)


# --- items 5 and the verification failure branch --------------------------------------------

ILM = "    privileges: {cluster: [read_ilm], indices: [{names: [logs-web-default], privileges: [create_doc, auto_configure]}]}\n"


def with_read_ilm(world: World) -> Sequence[Any]:
    text = config_text(world.sandbox.url, world.out, str(world.engine.url)).replace(
        "    preset: logs-writer\n    dataset: web\n", ILM
    )
    return specs_from_config(parse_config(text))


def test_an_update_the_key_cannot_hold_is_a_failure_naming_rotators_role(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    report = lifecycle.run(with_read_ilm(world))
    updates = [o for o in report.outcomes if o.action.kind is ActionKind.UPDATE]
    assert [o.ok for o in updates] == [False]
    assert "rotator's own role lacks cluster:read_ilm" in updates[0].detail
    assert source_row(world, "web").failure_count == 1
    assert ("web", "key.update_failed") in [(s, a) for s, a, _d in audit_actions(world)]


def test_a_new_key_failing_verification_is_invalidated_and_says_why(world: World) -> None:
    report = world.lifecycle().run(with_read_ilm(world))
    failed = [o for o in report.failed if o.action.kind is ActionKind.PROVISION]
    assert [o.action.source for o in failed] == ["web"]
    assert "cluster read_ilm is missing" in failed[0].detail
    assert "rotator's own role lacks cluster:read_ilm" in failed[0].detail
    assert not valid_untracked(world)
    assert source_row(world, "web").failure_count == 1


def test_a_failed_compensation_is_finished_by_the_next_run(world: World) -> None:
    specs = with_read_ilm(world)
    world.sandbox.add_faults([{"method": "DELETE", "path": "/_security/api_key", "status": 503}])
    report = world.lifecycle().run(specs)
    assert any("invalidating the new key failed too" in o.detail for o in report.failed)
    with Session(world.engine) as session:
        open_rotations = [r for r in session.query(Rotation).all() if r.finished_at is None]
    assert [r.source_name for r in open_rotations] == ["web"]
    world.sandbox.clear_faults()
    report = world.lifecycle().run(specs)
    resumed = [o for o in report.outcomes if o.action.kind is ActionKind.RESUME]
    assert [o.ok for o in resumed] == [True]
    assert "compensated" in resumed[0].detail
    assert not valid_untracked(world)


def test_creation_failing_is_counted_and_backed_off(world: World) -> None:
    world.sandbox.add_faults([{"method": "PUT", "path": "/_security/api_key", "status": 500}])
    report = world.lifecycle().run(world.specs)
    assert {o.action.source for o in report.failed if o.action.kind is ActionKind.PROVISION} == set(
        SOURCES
    )
    assert all(
        "creating the key failed" in o.detail
        for o in report.failed
        if o.action.kind is ActionKind.PROVISION
    )
    assert source_row(world, "web").failure_count == 1
    plan = world.lifecycle().plan(world.specs)
    assert {a.kind for a in plan} == {ActionKind.HOLD}
    world.sandbox.clear_faults()
    world.advance(timedelta(minutes=1))
    assert not world.lifecycle().run(world.specs).failed


def test_an_orphan_of_this_store_is_invalidated(world: World) -> None:
    world.lifecycle().run(world.specs)
    with Session(world.engine) as session:
        rotation_id = session.query(Rotation).first().id  # type: ignore[union-attr]
    as_rotator = Elasticsearch(world.sandbox.url, basic_auth=("rotator", world.password))
    orphan = as_rotator.security.create_api_key(
        name="rotator-web-99",
        metadata={"managed_by": "rotator", "source": "web", "rotation_id": rotation_id},
    )
    report = world.lifecycle().run(world.specs)
    orphans = [o for o in report.outcomes if o.action.kind is ActionKind.INVALIDATE_ORPHAN]
    assert [(o.ok, o.action.key_id) for o in orphans] == [(True, orphan["id"])]
    info = world.admin().security.get_api_key(id=orphan["id"])["api_keys"][0]
    assert info["invalidated"] is True


def test_recovery_failing_is_reported_and_converges_later(world: World) -> None:
    from tests.reliability.test_interrupted_delivery import SimulatedCrash, crash_at

    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    with pytest.raises(SimulatedCrash):
        world.lifecycle(checkpoint=crash_at("key-created")).run(world.specs, forced=["web"])
    world.sandbox.add_faults([{"method": "DELETE", "path": "/_security/api_key", "status": 503}])
    report = lifecycle.run(world.specs)
    resumed = [o for o in report.outcomes if o.action.kind is ActionKind.RESUME]
    assert [o.ok for o in resumed] == [False]
    assert "503" in resumed[0].detail
    world.sandbox.clear_faults()
    report = lifecycle.run(world.specs)
    assert not report.failed, [o.detail for o in report.failed]
    assert not valid_untracked(world)


# --- item 7: a stuck recovery still alerts; stored overlap -----------------------------------


def test_a_stuck_recovery_does_not_silence_the_expiry_alert(world: World) -> None:
    from tests.reliability.test_interrupted_delivery import SimulatedCrash, crash_at

    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    for path in world.out.iterdir():
        path.unlink()
    world.out.rmdir()
    world.out.write_text("not a directory")  # every delivery fails from now on
    world.advance(timedelta(days=29, hours=12))
    lifecycle.run(world.specs)  # fails: the sources back off
    world.advance(timedelta(hours=2))
    with pytest.raises(SimulatedCrash):
        world.lifecycle(checkpoint=crash_at("key-created")).run(world.specs)
    # Recovery finds the lost key but cannot invalidate it: it stays stuck on every run.
    world.sandbox.add_faults([{"method": "DELETE", "path": "/_security/api_key", "status": 503}])
    with structlog.testing.capture_logs() as logs:
        lifecycle.run(world.specs)
    alerts = [e for e in logs if e["event"] == "key_expiring_while_failing"]
    assert "web" in {e["source"] for e in alerts}


def test_recovery_of_a_removed_source_uses_its_stored_overlap(world: World) -> None:
    from tests.reliability.test_interrupted_delivery import SimulatedCrash, crash_at

    text = config_text(world.sandbox.url, world.out, str(world.engine.url)).replace(
        "overlap: 24h", "overlap: 2h"
    )
    specs = specs_from_config(parse_config(text))
    lifecycle = world.lifecycle()
    lifecycle.run(specs)
    old = world.delivered("app")
    with pytest.raises(SimulatedCrash):
        world.lifecycle(checkpoint=crash_at("key-delivered")).run(specs, forced=["app"])
    lifecycle.run([s for s in specs if s.name != "app"])
    with Session(world.engine) as session:
        row = session.query(ApiKey).filter(ApiKey.es_id == old[0]).one()
        assert row.retire_at is not None
        assert row.state is ApiKeyState.RETIRING
        assert row.retire_at - world.clock.now() <= timedelta(hours=2)


# --- item 8: plan shows what once does --------------------------------------------------------


def test_plan_and_once_agree_after_a_config_change_during_backoff(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    for path in world.out.iterdir():
        path.unlink()
    world.out.rmdir()
    world.out.write_text("not a directory")
    world.advance(timedelta(days=20, minutes=1))  # past renewal, whatever the set-up took
    lifecycle.run(world.specs)  # every rotation fails: backoff
    narrower = specs_from_config(
        parse_config(
            config_text(world.sandbox.url, world.out, str(world.engine.url)).replace(
                "    preset: logs-writer\n    dataset: web\n",
                "    privileges: {indices: [{names: [logs-web-default], privileges: [create_doc]}]}\n",
            )
        )
    )
    planned = [(a.kind, a.source) for a in lifecycle.plan(narrower)]
    done = [(o.action.kind, o.action.source) for o in lifecycle.run(narrower).outcomes]
    done = [d for d in done if d[0] is not ActionKind.HEALTH]
    assert planned == done


# --- item 9: once reports unhealthy sources ---------------------------------------------------


def test_a_source_without_a_valid_key_fails_the_run_even_while_backing_off(world: World) -> None:
    world.out.rmdir()
    world.out.write_text("not a directory")
    lifecycle = world.lifecycle()
    assert lifecycle.run(world.specs).failed  # provisioning fails
    report = lifecycle.run(world.specs)  # backing off: nothing attempted
    assert {o.action.kind for o in report.outcomes} == {ActionKind.HOLD, ActionKind.HEALTH}
    unhealthy = {o.action.source: o.detail for o in report.failed}
    assert set(unhealthy) == set(SOURCES)
    assert all(d.startswith("no current key; 1 failure(s)") for d in unhealthy.values())


def test_a_current_key_invalidated_outside_rotator_is_drift_logged_and_audited(
    world: World,
) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    web = world.delivered("web")
    world.admin().security.invalidate_api_key(ids=[web[0]])
    with structlog.testing.capture_logs() as logs:
        lifecycle.run(world.specs)
    drifted = [e for e in logs if e["event"] == "key_drifted"]
    assert [(e["source"], e["log_level"], e["key_id"]) for e in drifted] == [
        ("web", "warning", web[0])
    ]
    assert ("web", "key.drifted") in [(s, a) for s, a, _d in audit_actions(world)]


# --- item 11: no sink output in the audit trail -----------------------------------------------


def test_the_audit_trail_records_what_failed_not_what_the_sink_printed(world: World) -> None:
    import json
    import sys

    noisy = [
        sys.executable,
        "-c",
        "import sys; sys.stdin.read(); print('MARKER-7f3a' * 3, file=sys.stderr); sys.exit(3)",
    ]
    text = config_text(world.sandbox.url, world.out, str(world.engine.url), sources=("web",))
    text += f"      - {json.dumps({'type': 'exec', 'argv': noisy})}\n"
    report = world.lifecycle().run(specs_from_config(parse_config(text)))
    assert report.failed
    events = audit_actions(world)
    assert "MARKER-7f3a" not in json.dumps(events)
    assert "MARKER-7f3a" not in (source_row(world, "web").last_error or "")
    failed = [d for s, a, d in events if a == "rotation.failed"]
    assert failed
    assert "exit" in failed[0]["error"]


# --- item 14: the delivered file changed ------------------------------------------------------


@pytest.mark.parametrize("change", ["mode", "content"])
def test_a_changed_credential_file_is_replaced_by_a_fresh_delivery(
    world: World, change: str
) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    before = world.delivered("web")
    path = world.key_file("web")
    if change == "mode":
        path.chmod(0o644)
    else:
        path.write_text("someone:else\n")
    plan = lifecycle.plan(world.specs)
    assert [(a.kind, a.source, a.reason.value) for a in plan] == [
        (ActionKind.ROTATE, "web", "drifted")
    ]
    assert not lifecycle.run(world.specs).failed
    after = world.delivered("web")
    assert after != before
    assert path.stat().st_mode & 0o777 == 0o600
    assert lifecycle.plan(world.specs) == []
