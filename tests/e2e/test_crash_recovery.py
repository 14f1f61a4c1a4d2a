"""A crash at every step boundary converges on the next run: one current delivered key per source."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from elasticsearch import AuthenticationException, Elasticsearch
from sqlalchemy.orm import Session

from rotator.app import build_lifecycle
from rotator.clock import SystemClock
from rotator.config import parse_config
from rotator.model import specs_from_config
from rotator.store.models import ApiKey, ApiKeyState
from tests.e2e.conftest import SOURCES, World, config_text

STEPS = [
    "sink-delivered",
    "intent-recorded",
    "key-created",
    "key-recorded",
    "key-verified",
    "key-delivered",
    "key-activated",
]
ROOT = Path(__file__).resolve().parents[2]


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing in rotator catches it."""


def crash_at(step: str, source: str = "web"):  # type: ignore[no-untyped-def]
    seen = {"n": 0}

    def checkpoint(name: str) -> None:
        if name == step:
            seen["n"] += 1
            raise SimulatedCrash(step)

    return checkpoint


def assert_converged(world: World) -> None:
    admin = world.admin()
    with Session(world.engine) as session:
        rows = session.query(ApiKey).all()
        active = {r.source_name: r.es_id for r in rows if r.state is ApiKeyState.ACTIVE}
        tracked = {r.es_id for r in rows if r.state in (ApiKeyState.ACTIVE, ApiKeyState.RETIRING)}
    assert sorted(active) == sorted(SOURCES)
    for source in SOURCES:
        key_id, secret = world.delivered(source)
        assert key_id == active[source], f"{source}: the file does not hold the current key"
        me = Elasticsearch(world.sandbox.url, api_key=(key_id, secret)).security.authenticate()
        assert me["api_key"]["id"] == key_id
    now_ms = world.sandbox.now_ms()
    valid = [
        k["id"]
        for k in admin.security.get_api_key(username="rotator")["api_keys"]
        if not k["invalidated"] and k.get("expiration", now_ms + 1) > now_ms
    ]
    untracked = set(valid) - tracked
    assert not untracked, f"valid rotator keys nobody tracks: {untracked}"


@pytest.mark.parametrize("step", STEPS)
def test_crash_while_provisioning_converges(world: World, step: str) -> None:
    with pytest.raises(SimulatedCrash):
        world.lifecycle(checkpoint=crash_at(step)).run(world.specs)
    world.lifecycle().run(world.specs)
    assert_converged(world)
    world.lifecycle().run(world.specs)  # and a further run changes nothing
    assert_converged(world)


@pytest.mark.parametrize("step", STEPS)
def test_crash_while_rotating_converges_and_keeps_the_old_key(world: World, step: str) -> None:
    from datetime import timedelta

    world.lifecycle().run(world.specs)
    old = {s: world.delivered(s) for s in SOURCES}
    world.advance(timedelta(days=20))
    with pytest.raises(SimulatedCrash):
        world.lifecycle(checkpoint=crash_at(step)).run(world.specs)
    for source in SOURCES:  # whatever happened, every shipper still holds a working key
        key_id, secret = world.delivered(source)
        Elasticsearch(world.sandbox.url, api_key=(key_id, secret)).security.authenticate()
    world.lifecycle().run(world.specs)
    assert_converged(world)
    for source in SOURCES:  # the old keys serve out their overlap
        try:
            Elasticsearch(world.sandbox.url, api_key=old[source]).security.authenticate()
        except AuthenticationException:
            pytest.fail(f"{source}: the old key died before its overlap ended")


@pytest.mark.parametrize("step", ["key-created", "key-delivered"])
def test_sigkill_converges(world: World, tmp_path: Path, step: str) -> None:
    world.sandbox.state.clock.reset()  # the child runs on the real clock
    config_file = tmp_path / "rotator.yaml"
    config_file.write_text(config_text(world.sandbox.url, world.out, str(world.engine.url)))
    child = subprocess.run(
        [sys.executable, "-m", "tests.e2e.crash_child", str(config_file), step],
        cwd=ROOT,
        env={**os.environ, "ROTATOR_TEST_ES_PASSWORD": world.password},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    config = parse_config(config_file.read_text())
    build_lifecycle(config, world.engine, SystemClock()).run(specs_from_config(config))
    assert_converged(world)
