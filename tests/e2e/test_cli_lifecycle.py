"""The lifecycle verbs as a user runs them: plan, once, status, rotate, through subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import SOURCES, World, config_text

ROOT = Path(__file__).resolve().parents[2]


def rotator(world: World, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rotator", "--config", str(config), *args],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "ROTATOR_TEST_ES_PASSWORD": world.password, "PYTHONPATH": str(ROOT)},
    )


def setup_config(world: World, tmp_path: Path, store: str | None = None) -> Path:
    world.sandbox.state.clock.reset()  # the CLI runs on the real clock
    path = tmp_path / "rotator.yaml"
    path.write_text(config_text(world.sandbox.url, world.out, store or str(world.engine.url)))
    return path


def test_plan_once_status_rotate(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    plan = rotator(world, config, "plan", "-o", "json")
    assert plan.returncode == 0, plan.stderr
    doc = json.loads(plan.stdout)
    assert doc["summary"] == "provision 3, rotate 0, update 0, retire 0"
    assert {a["source"] for a in doc["actions"]} == set(SOURCES)
    assert not any(world.key_file(s).exists() for s in SOURCES), "plan must change nothing"

    once = rotator(world, config, "once")
    assert once.returncode == 0, once.stderr
    assert once.stdout.splitlines()[0].split() == ["ACTION", "SOURCE", "RESULT", "KEY", "DETAIL"]
    assert once.stdout.count(" ok ") == 3

    status = json.loads(rotator(world, config, "status", "-o", "json").stdout)["sources"]
    assert [s["source"] for s in status] == list(SOURCES)
    for entry in status:
        assert entry["state"] == "active"
        assert entry["key_id"] == world.delivered(entry["source"])[0]
        assert entry["failures"] == 0
        assert entry["last_rotation"]["state"] == "completed"

    idle = rotator(world, config, "plan")
    assert idle.stdout.splitlines() == ["provision 0, rotate 0, update 0, retire 0"]

    dry = rotator(world, config, "rotate", "web", "--dry-run", "-o", "json")
    assert [a["action"] for a in json.loads(dry.stdout)["actions"]] == ["rotate"]
    before = world.delivered("web")
    forced = rotator(world, config, "rotate", "web")
    assert forced.returncode == 0, forced.stderr
    assert world.delivered("web") != before
    table = rotator(world, config, "status").stdout
    assert "retiring" not in table.splitlines()[0]
    assert before[0] in json.dumps(
        json.loads(rotator(world, config, "status", "-o", "json").stdout)
    )


def test_unknown_source_is_a_usage_error(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    result = rotator(world, config, "rotate", "nope")
    assert result.returncode == 2
    assert "unknown source 'nope'; configured: web, db, app" in result.stderr


def test_store_behind_is_refused(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path, store=f"sqlite:///{tmp_path / 'fresh.db'}")
    for verb in ("status", "plan", "once"):
        result = rotator(world, config, verb)
        assert result.returncode == 2, verb
        assert "run `rotator db upgrade`" in result.stderr


def test_unreachable_elasticsearch_exits_3(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    text = config.read_text().replace(world.sandbox.url, "http://127.0.0.1:9")
    config.write_text(text)
    result = rotator(world, config, "plan")
    assert result.returncode == 3, result.stderr
    assert "cannot reach Elasticsearch at http://127.0.0.1:9: Connection refused" in result.stderr


def test_failed_actions_exit_1_and_are_listed(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    assert rotator(world, config, "once").returncode == 0
    for path in world.out.iterdir():
        path.unlink()
    world.out.rmdir()
    world.out.write_text("not a directory")
    result = rotator(world, config, "rotate", "--all", "-o", "json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["failed"] == 3
    assert all(not o["ok"] for o in doc["outcomes"])


def test_wrong_password_is_a_configuration_error(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "rotator", "--config", str(config), "plan"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "ROTATOR_TEST_ES_PASSWORD": "wrong-password", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2, result.stderr
    assert f"{world.sandbox.url} answered 401 security_exception" in result.stderr
    assert "wrong-password" not in result.stderr


def hold_lease(world: World, holder: str) -> None:
    from datetime import timedelta

    from sqlalchemy.orm import Session

    from rotator.clock import SystemClock
    from rotator.store.lease import LeaseRepository

    with Session(world.engine) as session, session.begin():
        taken = LeaseRepository(session).try_acquire(
            "lifecycle", holder, SystemClock().now(), timedelta(minutes=10)
        )
        assert taken is not None


def test_a_live_lease_holder_keeps_others_out(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    hold_lease(world, "another-host:4242")
    result = rotator(world, config, "once")
    assert result.returncode == 3
    assert (
        "another rotator holds the lifecycle lease: another-host:4242 (epoch 1) until"
        in result.stderr
    )
    assert not world.key_file("web").exists()


def test_a_lease_left_by_a_killed_local_run_is_taken_over(world: World, tmp_path: Path) -> None:
    import socket

    config = setup_config(world, tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    hold_lease(world, f"{socket.gethostname()}:{dead}")
    result = rotator(world, config, "once")
    assert result.returncode == 0, result.stderr
    assert world.key_file("web").exists()


def test_status_shows_what_elasticsearch_says_and_flags_a_mismatch(
    world: World, tmp_path: Path
) -> None:
    config = setup_config(world, tmp_path)
    assert rotator(world, config, "once").returncode == 0
    old = world.delivered("web")
    assert rotator(world, config, "rotate", "web").returncode == 0
    world.admin().security.invalidate_api_key(ids=[world.delivered("db")[0]])
    doc = json.loads(rotator(world, config, "status", "-o", "json").stdout)
    entries = {e["source"]: e for e in doc["sources"]}
    assert entries["db"]["elasticsearch"] == "invalidated"
    assert entries["db"]["mismatch"] is True
    assert entries["app"]["elasticsearch"] == "valid"
    assert entries["app"]["mismatch"] is False
    retiring = entries["web"]["retiring"]
    assert [(r["key_id"], r["elasticsearch"]) for r in retiring] == [(old[0], "valid")]
    assert retiring[0]["retire_at"].endswith("Z")
    assert entries["app"]["next_action"]["kind"] == "rotate"
    assert entries["db"]["next_action"]["kind"] == "provision"
    table = rotator(world, config, "status").stdout.splitlines()
    assert max(len(line) for line in table) <= 120
    assert any(old[0] in line and "retiring" in line for line in table)
    assert any(line.startswith("db ") and "MISMATCH" in line for line in table)


def test_once_exits_1_while_a_source_has_no_valid_key(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    world.out.rmdir()
    world.out.write_text("not a directory")
    assert rotator(world, config, "once").returncode == 1  # provisioning fails
    held = rotator(world, config, "once", "-o", "json")  # backing off: nothing attempted
    assert held.returncode == 1, held.stdout
    doc = json.loads(held.stdout)
    health = [o for o in doc["outcomes"] if o["action"] == "health"]
    assert sorted(o["source"] for o in health) == sorted(SOURCES)
    assert all(o["result"].startswith("no current key") for o in health)


def test_times_are_utc_whole_seconds_with_z(world: World, tmp_path: Path) -> None:
    import re

    config = setup_config(world, tmp_path)
    plan = json.loads(rotator(world, config, "plan", "-o", "json").stdout)
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
    assert all(stamp.match(a["due_at"]) for a in plan["actions"])
    assert rotator(world, config, "once").returncode == 0
    doc = json.loads(rotator(world, config, "status", "-o", "json").stdout)
    for entry in doc["sources"]:
        for field in ("expires_at", "renewal_at"):
            assert stamp.match(entry[field]), entry[field]
        assert stamp.match(entry["last_rotation"]["started_at"])


def test_status_shows_the_leader_lease(world: World, tmp_path: Path) -> None:
    config = setup_config(world, tmp_path)
    before = json.loads(rotator(world, config, "status", "-o", "json").stdout)
    assert before["leader"] is None
    assert rotator(world, config, "once").returncode == 0
    assert rotator(world, config, "once").returncode == 0
    doc = json.loads(rotator(world, config, "status", "-o", "json").stdout)
    leader = doc["leader"]
    assert leader["epoch"] == 2  # each run took the lease anew after the last one released it
    assert leader["live"] is False
    assert leader["expires_at"].endswith("Z")
    first = rotator(world, config, "status").stdout.splitlines()[0]
    assert first.startswith(f"leader: {leader['holder']} (epoch 2) expired at ")
