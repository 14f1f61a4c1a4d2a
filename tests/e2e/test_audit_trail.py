"""The audit trail over a whole run: what it records, its JSONL mirror and anchor, retention,
and that no secret reaches it in any form."""

from __future__ import annotations

import base64
import json
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from elasticsearch import Elasticsearch
from sqlalchemy.orm import Session

from rotator.app import build_purger, build_tracker
from rotator.audit import verify, verify_lines
from rotator.audit_mirror import anchors, mirror_of, sync_copies
from rotator.config import AuditConfig, Config
from rotator.store.models import AuditCheckpoint, AuditEvent
from tests.e2e.conftest import World


def with_audit(world: World, tmp_path: Path, **settings: Any) -> Config:
    audit = AuditConfig.model_validate({"jsonl_path": str(tmp_path / "audit.jsonl"), **settings})
    return world.config.model_copy(update={"audit": audit})


def actions(world: World, subject: str | None = None) -> list[str]:
    with Session(world.engine) as session:
        rows = session.scalars(sa.select(AuditEvent).order_by(AuditEvent.seq)).all()
    return [r.action for r in rows if subject is None or r.subject == subject]


def secrets_of(world: World) -> set[str]:
    """Every delivered secret, in every encoding a credential travels in."""
    found = {world.password}
    for path in world.out.glob("*.key*"):
        text = path.read_text().strip()
        if ":" not in text:
            continue
        key_id, secret = text.split(":", 1)
        encoded = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
        found |= {secret, encoded, f"{key_id}:{secret}", encoded.rstrip("=")}
    return found


def test_a_run_records_provision_rotate_retire_track_and_purge_in_order(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    first = world.delivered("web")[0]
    world.advance(timedelta(days=20, minutes=1))  # past rotate_before: rotated, overlap starts
    lifecycle.run(world.specs)
    world.advance(timedelta(days=1, minutes=1))  # past the overlap: the old key is retired
    lifecycle.run(world.specs)
    build_tracker(world.config, world.engine, world.clock).run()
    purge = world.config.model_copy(
        update={"purge": world.config.purge.model_copy(update={"enabled": True})}
    )
    rotator_user = Elasticsearch(world.sandbox.url, basic_auth=("rotator", world.password))
    rotator_user.security.create_api_key(name="one-off export", expiration="1d")
    world.advance(timedelta(days=2))  # the one-off key expired: the purge has work
    build_purger(purge, world.engine, world.clock).run()

    web = actions(world, "web")
    assert web[:4] == ["rotation.started", "key.verified", "key.delivered", "key.activated"]
    assert web[4:8] == ["rotation.started", "key.verified", "key.delivered", "key.activated"]
    assert web[8] == "key.invalidated"
    everything = actions(world)
    assert everything.index("inventory.baselined") > everything.index("key.invalidated")
    assert any(
        a.startswith("keys.purged") for a in everything[everything.index("inventory.baselined") :]
    )
    with Session(world.engine) as session:
        retired = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "key.invalidated")
        ).all()
        assert first in {r.details_json.get("key_id") for r in retired}
        assert verify(session).ok


def test_the_mirror_holds_every_event_and_verifies_on_its_own(world: World, tmp_path: Path) -> None:
    config = with_audit(world, tmp_path)
    world.lifecycle().run(world.specs)

    report = sync_copies(config, world.engine, world.clock)

    path = tmp_path / "audit.jsonl"
    lines = path.read_text().splitlines()
    assert report.problems == []
    assert report.written["jsonl"] == len(lines) == len(actions(world))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert verify_lines(lines).ok
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))
    again = sync_copies(config, world.engine, world.clock)
    assert again.written["jsonl"] == 0
    assert len(path.read_text().splitlines()) == len(lines)


def test_removing_the_newest_events_is_caught_by_the_mirror_anchor(
    world: World, tmp_path: Path
) -> None:
    config = with_audit(world, tmp_path)
    world.lifecycle().run(world.specs)
    sync_copies(config, world.engine, world.clock)
    total = len(actions(world))
    with world.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER audit_events_no_delete"))
        conn.execute(sa.text(f"DELETE FROM audit_events WHERE seq > {total - 2}"))

    with Session(world.engine) as session:
        alone = verify(session)
        anchored = verify(session, anchors(config))

    assert alone.ok  # the chain that is left is consistent...
    assert not anchored.ok  # ...but the anchor outside it names what is missing
    assert anchored.broken_at == total - 1
    assert f"{total - 1}..{total}" in anchored.reason
    later = sync_copies(config, world.engine, world.clock)
    assert any("ends at event" in p for p in later.problems)  # the mirror is not rewritten


def test_the_mirror_rotates_by_size_and_keeps_its_head(world: World, tmp_path: Path) -> None:
    config = with_audit(world, tmp_path, jsonl_max_bytes=4096, jsonl_backups=2)
    lifecycle = world.lifecycle()
    for _ in range(4):
        lifecycle.run(world.specs, forced=["web", "db", "app"])
        sync_copies(config, world.engine, world.clock)

    mirror = mirror_of(config)
    assert mirror is not None
    files = mirror.files()
    assert [f.name for f in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    assert not (tmp_path / "audit.jsonl.3").exists()
    head = mirror.head()
    assert head is not None
    assert head.seq == len(actions(world))
    lines = [line for f in reversed(files) for line in f.read_text().splitlines()]
    assert verify_lines(lines).ok  # the files kept still chain, from wherever they start


def test_retention_removes_old_events_behind_a_checkpoint_and_the_rest_verifies(
    world: World, tmp_path: Path
) -> None:
    config = with_audit(world, tmp_path, retention="7d")
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    old = len(actions(world))
    world.advance(timedelta(days=20, minutes=1))
    lifecycle.run(world.specs)
    newer = len(actions(world)) - old
    world.advance(timedelta(days=8))

    report = sync_copies(config, world.engine, world.clock, retention=True)

    total = old + newer
    assert report.retained_removed == total - 1  # the newest event always stays
    with Session(world.engine) as session:
        checkpoint = session.scalars(sa.select(AuditCheckpoint)).one()
        assert (checkpoint.seq, checkpoint.removed) == (total - 1, total - 1)
        assert verify(session, anchors(config)).ok
        left = session.scalars(sa.select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert left == [total, total + 1]
        last = session.get(AuditEvent, total + 1)
        assert last is not None
        assert last.action == "audit.retention_applied"
    assert verify_lines((tmp_path / "audit.jsonl").read_text().splitlines()).ok


def test_retention_never_removes_what_a_copy_has_not_got(world: World, tmp_path: Path) -> None:
    config = with_audit(world, tmp_path, retention="1d")
    world.lifecycle().run(world.specs)
    world.advance(timedelta(days=2))
    (tmp_path / "audit.jsonl").mkdir()  # the mirror cannot be written: nothing is copied

    report = sync_copies(config, world.engine, world.clock, retention=True)

    assert any(p.startswith("jsonl:") for p in report.problems)
    assert report.retained_removed == 0


def test_no_secret_reaches_the_trail_the_mirror_or_the_logs(world: World, tmp_path: Path) -> None:
    config = with_audit(world, tmp_path)
    lifecycle = world.lifecycle()
    with structlog.testing.capture_logs() as logs:
        lifecycle.run(world.specs)
        world.advance(timedelta(days=20, minutes=1))
        lifecycle.run(world.specs, forced=["web"])
        build_tracker(world.config, world.engine, world.clock).run()
        sync_copies(config, world.engine, world.clock)
    secrets = secrets_of(world)
    assert len(secrets) > 4
    with world.engine.connect() as conn:
        stored = "\n".join(
            json.dumps([str(v) for v in row], default=str)
            for table in ("audit_events", "tracked_keys", "api_keys", "rotations", "sources")
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")).all()
        )
    mirrored = (tmp_path / "audit.jsonl").read_text()
    logged = json.dumps(logs, default=str)
    for secret in secrets:
        assert secret not in stored
        assert secret not in mirrored
        assert secret not in logged
    assert any(e.get("event") == "audit_event" for e in logs)  # the log mirror ran


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_events SET outcome = 'x'", "DELETE FROM audit_events"]
)
def test_the_database_refuses_changes_to_the_trail(world: World, statement: str) -> None:
    world.lifecycle().run(world.specs)

    with pytest.raises(sa.exc.DatabaseError, match="append-only"), world.engine.begin() as conn:
        conn.execute(sa.text(statement))
