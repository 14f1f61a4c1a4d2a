"""End to end against the sandbox: provision, ship, rotate with overlap, retire, never a gap."""

from __future__ import annotations

import json
import stat
from datetime import timedelta

import pytest
import structlog
from elasticsearch import AuthenticationException, AuthorizationException
from sqlalchemy.orm import Session

from rotator import audit
from rotator.config import parse_config
from rotator.model import ActionKind, specs_from_config
from rotator.store.models import ApiKey, ApiKeyState
from tests.e2e.conftest import SOURCES, World, config_text

RENEWAL = timedelta(days=20)
OVERLAP = timedelta(hours=24)
SECOND = timedelta(seconds=1)


def states(world: World) -> dict[str, list[tuple[str, str]]]:
    with Session(world.engine) as session:
        rows = session.query(ApiKey).order_by(ApiKey.id).all()
        out: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            out.setdefault(row.source_name or "", []).append((row.es_id or "", row.state.value))
        return out


def key_is_valid(world: World, key_id: str, secret: str) -> bool:
    from elasticsearch import Elasticsearch

    try:
        me = Elasticsearch(world.sandbox.url, api_key=(key_id, secret)).security.authenticate()
    except AuthenticationException:
        return False
    return bool(me["api_key"]["id"] == key_id)


def assert_every_source_has_a_working_key(world: World) -> None:
    for source in SOURCES:
        key_id, secret = world.delivered(source)
        assert key_is_valid(world, key_id, secret), f"{source} holds a dead key"


def test_provision_ship_rotate_overlap_retire(world: World) -> None:
    lifecycle = world.lifecycle()
    report = lifecycle.run(world.specs)
    assert [o.action.kind for o in report.outcomes] == [ActionKind.PROVISION] * 3
    assert not report.failed

    # Delivered with mode 0600, and each key ships to its own data stream only.
    first = {}
    for source in SOURCES:
        path = world.key_file(source)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        first[source] = world.delivered(source)
        shipper = world.as_key(source)
        assert (
            shipper.index(index=f"logs-{source}-default", document={"m": 1})["result"] == "created"
        )
        other = next(s for s in SOURCES if s != source)
        with pytest.raises(AuthorizationException):
            shipper.index(index=f"logs-{other}-default", document={"m": 1})
    assert world.admin().count(index="logs-web-default")["count"] == 1

    # One second before renewal: nothing happens.
    world.advance(RENEWAL - SECOND)
    assert lifecycle.run(world.specs).outcomes == []
    assert {s: world.delivered(s) for s in SOURCES} == first

    # At renewal: rotated; both keys valid during the overlap.
    world.advance(SECOND)
    report = lifecycle.run(world.specs)
    assert sorted(o.action.kind for o in report.outcomes) == [ActionKind.ROTATE] * 3
    assert not report.failed
    for source in SOURCES:
        new_id, new_secret = world.delivered(source)
        old_id, old_secret = first[source]
        assert new_id != old_id
        assert key_is_valid(world, new_id, new_secret)
        assert key_is_valid(world, old_id, old_secret)
        assert world.as_key(source).index(index=f"logs-{source}-default", document={"m": 2})

    # One second before the overlap ends: the old keys still work.
    world.advance(OVERLAP - SECOND)
    lifecycle.run(world.specs)
    assert all(key_is_valid(world, *first[s]) for s in SOURCES)
    assert_every_source_has_a_working_key(world)

    # Overlap over: old keys invalidated, new keys keep working.
    world.advance(SECOND)
    report = lifecycle.run(world.specs)
    assert sorted(o.action.kind for o in report.outcomes) == [ActionKind.RETIRE] * 3
    assert not any(key_is_valid(world, *first[s]) for s in SOURCES)
    assert_every_source_has_a_working_key(world)
    for source, rows in states(world).items():
        assert [state for _id, state in rows] == ["invalidated", "active"], source


def test_store_and_audit_hold_no_secret_and_the_chain_verifies(world: World) -> None:
    with structlog.testing.capture_logs() as logs:
        world.lifecycle().run(world.specs)
    secrets = [world.delivered(s)[1] for s in SOURCES]
    raw = b"".join(p.read_bytes() for p in world.out.parent.glob("rotator.db*"))
    for secret in secrets:
        assert secret.encode() not in raw
        assert secret not in repr(logs)
    with Session(world.engine) as session:
        result = audit.verify(session)
    assert result.ok
    assert result.events >= 3 * 4


def test_a_failing_sink_keeps_the_old_key_and_backs_off(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    web_before = world.delivered("web")
    saved = {s: world.key_file(s).read_text() for s in SOURCES}
    # Replace the sinks' directory by a plain file: no write can succeed, not even as root.
    for path in world.out.iterdir():
        path.unlink()
    world.out.rmdir()
    world.out.write_text("not a directory")
    world.advance(RENEWAL)
    report = lifecycle.run(world.specs)
    assert {o.action.source for o in report.failed} == set(SOURCES)
    assert all("failed" in o.detail or "directory" in o.detail for o in report.failed)
    world.out.unlink()
    world.out.mkdir()
    for source, text in saved.items():
        world.key_file(source).write_text(text)
    assert key_is_valid(world, *web_before)  # the previous key keeps serving
    plan = lifecycle.plan(world.specs)
    assert {a.kind for a in plan} == {ActionKind.HOLD}
    # The new keys were invalidated: nothing valid is left untracked.
    rows = states(world)
    assert [state for _id, state in rows["web"]] == ["active", "invalidated"]
    world.advance(timedelta(minutes=1))
    report = lifecycle.run(world.specs)
    assert sorted(o.action.kind for o in report.outcomes) == [ActionKind.ROTATE] * 3
    assert not report.failed
    assert world.delivered("web") != web_before


def test_privileges_changed_updates_the_key_in_place(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    before = world.delivered("web")
    narrower = parse_config(
        config_text(world.sandbox.url, world.out, str(world.engine.url)).replace(
            "    preset: logs-writer\n    dataset: web\n",
            "    privileges: {indices: [{names: [logs-web-default], privileges: [create_doc]}]}\n",
        )
    )
    report = lifecycle.run(specs_from_config(narrower))
    assert [(o.action.kind, o.action.source) for o in report.outcomes] == [
        (ActionKind.UPDATE, "web")
    ]
    assert world.delivered("web") == before  # no new secret to distribute
    info = world.admin().security.get_api_key(id=before[0])["api_keys"][0]
    assert info["role_descriptors"]["rotator-web"]["cluster"] == []
    assert lifecycle.run(specs_from_config(narrower)).outcomes == []


def test_key_invalidated_outside_rotator_is_replaced_at_once(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    web = world.delivered("web")
    world.admin().security.invalidate_api_key(ids=[web[0]])
    report = lifecycle.run(world.specs)
    assert [(o.action.kind, o.action.reason.value) for o in report.outcomes] == [
        (ActionKind.PROVISION, "drifted")
    ]
    assert world.delivered("web") != web
    assert_every_source_has_a_working_key(world)


def test_removed_source_is_retired_after_the_overlap_not_at_once(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    app = world.delivered("app")
    remaining = [s for s in world.specs if s.name != "app"]
    lifecycle.run(remaining)
    assert key_is_valid(world, *app)
    world.advance(OVERLAP - SECOND)
    lifecycle.run(remaining)
    assert key_is_valid(world, *app)
    world.advance(SECOND)
    lifecycle.run(remaining)
    assert not key_is_valid(world, *app)


def test_rotator_identity_needs_nothing_more(world: World) -> None:
    me = world.admin().security.get_user(username="rotator")["rotator"]
    assert me["roles"] == ["rotator"]
    report = world.lifecycle().run(world.specs)
    assert not report.failed
    assert {o.action.kind for o in report.outcomes} == {ActionKind.PROVISION}
    assert [state for rows in states(world).values() for _i, state in rows] == [
        ApiKeyState.ACTIVE.value
    ] * 3


def test_expiring_while_failing_is_reported_at_error_level_on_every_run(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    for path in world.out.iterdir():
        path.unlink()
    world.out.rmdir()
    world.out.write_text("not a directory")  # every delivery fails from now on
    world.advance(timedelta(days=29, hours=12))  # 12h before expiry, inside critical_before
    with structlog.testing.capture_logs() as logs:
        lifecycle.run(world.specs)  # the first failure is itself an error
    failed = [e for e in logs if e["event"] == "rotation_failed"]
    assert {e["source"] for e in failed} == set(SOURCES)
    assert all(e["log_level"] == "error" for e in failed)
    world.advance(timedelta(hours=2))
    for _ in range(2):
        with structlog.testing.capture_logs() as logs:
            lifecycle.run(world.specs)
        alerts = [e for e in logs if e["event"] == "key_expiring_while_failing"]
        assert {e["source"] for e in alerts} == set(SOURCES)
        assert all(e["log_level"] == "error" for e in alerts)
        world.advance(timedelta(hours=2))  # past the backoff, so the next run tries again


def test_previous_key_waits_for_the_sinks_acknowledgement(world: World) -> None:
    import sys

    marker = world.out.parent / "ack-ok"
    ack = [
        sys.executable,
        "-c",
        f"import os, sys; sys.exit(0 if os.path.exists({str(marker)!r}) else 1)",
    ]
    consume = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    text = config_text(world.sandbox.url, world.out, str(world.engine.url), sources=("web",))
    sink = {"type": "exec", "argv": consume, "ack_command": ack}
    text += f"      - {json.dumps(sink)}\n"
    specs = specs_from_config(parse_config(text))
    lifecycle = world.lifecycle()
    lifecycle.run(specs)
    first = world.delivered("web")
    world.advance(RENEWAL)
    lifecycle.run(specs)
    world.advance(OVERLAP)
    report = lifecycle.run(specs)
    assert [
        o.detail.startswith(f"kept {first[0]}: waiting for exec:") for o in report.outcomes
    ] == [True]
    assert key_is_valid(world, *first)  # no acknowledgement yet: the old key keeps working
    marker.write_text("consumer moved")
    report = lifecycle.run(specs)
    assert [o.detail for o in report.outcomes] == [f"invalidated {first[0]} after its overlap"]
    assert not key_is_valid(world, *first)


def test_a_sink_failing_after_another_took_the_key_leaves_no_one_with_a_dead_key(
    world: World,
) -> None:
    import sys

    switch = world.out.parent / "exec-fails"
    switch.write_text("yes")
    flaky = [
        sys.executable,
        "-c",
        f"import os, sys; sys.stdin.read(); sys.exit(1 if os.path.exists({str(switch)!r}) else 0)",
    ]
    text = config_text(world.sandbox.url, world.out, str(world.engine.url), sources=("web",))
    text += f"      - {json.dumps({'type': 'exec', 'argv': flaky})}\n"
    specs = specs_from_config(parse_config(text))
    lifecycle = world.lifecycle()
    switch.unlink()
    lifecycle.run(specs)
    first = world.delivered("web")
    switch.write_text("yes")
    world.advance(RENEWAL)
    report = lifecycle.run(specs)
    assert [o.ok for o in report.outcomes] == [False]
    partial = world.delivered("web")  # the file sink took the new key before exec failed
    assert partial != first
    assert key_is_valid(world, *partial)  # so it must stay valid
    assert key_is_valid(world, *first)  # and the exec consumer still has the old one
    assert [state for _id, state in states(world)["web"]] == ["active", "retiring"]
    world.advance(timedelta(days=5))  # well past the overlap: neither may die while unresolved
    switch.unlink()
    lifecycle.run(specs)
    latest = world.delivered("web")
    assert latest not in (first, partial)
    assert key_is_valid(world, *first)
    assert key_is_valid(world, *partial)
    world.advance(OVERLAP)
    lifecycle.run(specs)
    assert not key_is_valid(world, *first)
    assert not key_is_valid(world, *partial)
    assert key_is_valid(world, *latest)


def test_a_sink_that_fails_once_is_retried_within_the_rotation(world: World) -> None:
    import sys

    attempts = world.out.parent / "attempts"
    once = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; sys.stdin.read(); p = Path(sys.argv[1]); "
        "n = int(p.read_text() or 0) if p.exists() else 0; p.write_text(str(n + 1)); "
        "sys.exit(1 if n == 0 else 0)",
        str(attempts),
    ]
    text = config_text(world.sandbox.url, world.out, str(world.engine.url), sources=("web",))
    text += f"      - {json.dumps({'type': 'exec', 'argv': once})}\n"
    specs = specs_from_config(parse_config(text))
    before = world.clock.now()
    report = world.lifecycle().run(specs)
    assert [o.ok for o in report.outcomes] == [True]
    assert attempts.read_text() == "2"
    assert world.clock.now() - before >= timedelta(seconds=1)  # it waited through the clock
