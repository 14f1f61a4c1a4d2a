"""A key a sink may hold is never invalidated: interrupted deliveries are finished, not undone.

The invariant: no key that any sink may hold is invalidated before a newer key reached that sink
and the overlap has passed. Delivery is recorded as started before the first sink is called, and
each sink's receipt right after it returns; recovery activates a rotation whose sinks all took the
key, and otherwise keeps the new key and delivers a fresh one to every sink.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from elasticsearch import AuthenticationException, Elasticsearch
from sqlalchemy.orm import Session

from rotator.clock import SystemClock
from rotator.config import parse_config
from rotator.model import specs_from_config
from rotator.store.models import ApiKey, ApiKeyState
from tests.e2e.conftest import World, config_text

ROOT = Path(__file__).resolve().parents[2]
OVERLAP = timedelta(hours=24)


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing in rotator catches it."""


def crash_at(step: str):  # type: ignore[no-untyped-def]
    def checkpoint(name: str) -> None:
        if name == step:
            raise SimulatedCrash(step)

    return checkpoint


def valid(world: World, key_id: str, secret: str) -> bool:
    try:
        me = Elasticsearch(world.sandbox.url, api_key=(key_id, secret)).security.authenticate()
    except AuthenticationException:
        return False
    return bool(me["api_key"]["id"] == key_id)


def active_key(world: World, source: str) -> str | None:
    with Session(world.engine) as session:
        rows = session.query(ApiKey).filter(ApiKey.source_name == source).all()
        return next((r.es_id for r in rows if r.state is ApiKeyState.ACTIVE), None)


@pytest.mark.parametrize("step", ["sink-returned", "sink-delivered"])
def test_a_forced_rotation_interrupted_after_the_sink_took_the_key_ends_with_that_key_current(
    world: World, step: str
) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    old = world.delivered("web")
    with pytest.raises(SimulatedCrash):
        world.lifecycle(checkpoint=crash_at(step)).run(world.specs, forced=["web"])
    taken = world.delivered("web")
    assert taken != old  # the sink took the new key before the crash
    report = lifecycle.run(world.specs)
    assert not report.failed, [o.detail for o in report.failed]
    held = world.delivered("web")
    assert valid(world, *held)
    assert active_key(world, "web") == held[0], "status must name the key the sink holds"
    assert held[0] != old[0], "the forced rotation must not be dropped"
    assert valid(world, *taken), "a key the sink held must outlive its overlap, not die now"
    assert valid(world, *old)  # the overlap still runs for the previous key
    world.advance(OVERLAP + timedelta(seconds=1))
    lifecycle.run(world.specs)
    assert valid(world, *world.delivered("web"))
    assert not valid(world, *old)


def test_two_sinks_interrupted_between_them_keep_every_key_a_sink_holds(world: World) -> None:
    second = world.out / "web-second.key"
    text = config_text(world.sandbox.url, world.out, str(world.engine.url), sources=("web",))
    text += f"      - {{type: file, path: '{second}', format: 'id:api_key'}}\n"
    specs = specs_from_config(parse_config(text))
    lifecycle = world.lifecycle()
    lifecycle.run(specs)
    old = world.delivered("web")
    calls = {"n": 0}

    def after_first_sink(name: str) -> None:
        if name == "sink-delivered":
            calls["n"] += 1
            if calls["n"] == 1:
                raise SimulatedCrash(name)

    with pytest.raises(SimulatedCrash):
        world.lifecycle(checkpoint=after_first_sink).run(specs, forced=["web"])
    first_sink = world.delivered("web")
    assert first_sink != old
    assert second.read_text().strip() == ":".join(old)  # the second sink still holds the old one
    lifecycle.run(specs)
    newest = world.delivered("web")
    assert newest not in (first_sink, old)
    assert second.read_text().strip() == ":".join(newest)
    assert active_key(world, "web") == newest[0]
    assert valid(world, *first_sink)  # both serve out the overlap
    assert valid(world, *old)
    world.advance(OVERLAP + timedelta(seconds=1))
    lifecycle.run(specs)
    assert not valid(world, *first_sink)
    assert not valid(world, *old)
    assert valid(world, *newest)


def _rotator(world: World, config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rotator", "--config", str(config), *args],
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ROTATOR_TEST_ES_PASSWORD": world.password, "PYTHONPATH": str(ROOT)},
    )


def _run(world: World, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    child = _rotator(world, config, *args)
    out, err = child.communicate(timeout=120)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_sigkill_while_an_exec_sink_finishes_never_invalidates_the_key_it_took(
    world: World, tmp_path: Path
) -> None:
    """The reproduction: an exec sink that writes its file, then lingers; SIGKILL meanwhile."""
    world.sandbox.state.clock.reset()  # the CLI runs on the real clock
    target = tmp_path / "K"
    script = f"umask 077; cat > {target}.tmp && mv {target}.tmp {target} && sleep 5"
    text = config_text(world.sandbox.url, world.out, str(world.engine.url), sources=("web",))
    text = text.replace(
        f"      - {{type: file, path: '{world.out / 'web.key'}', format: 'id:api_key'}}\n",
        "      - " + json.dumps({"type": "exec", "argv": ["/bin/sh", "-c", script]}) + "\n",
    )
    config = tmp_path / "rotator.yaml"
    config.write_text(text)
    first = _run(world, config, "once")
    assert first.returncode == 0, first.stderr
    before = target.read_text()
    rotate = _rotator(world, config, "rotate", "web")
    clock = SystemClock()
    deadline = clock.monotonic() + 60
    while target.read_text() == before:
        assert clock.monotonic() < deadline, "the rotation never delivered"
        assert rotate.poll() is None, rotate.communicate()
        clock.sleep(0.05)
    os.kill(rotate.pid, signal.SIGKILL)
    rotate.wait(timeout=30)
    taken = target.read_text().strip().split(":")
    after = _run(world, config, "once", "-o", "json")
    assert "compensated" not in after.stdout, after.stdout
    assert valid(world, taken[0], taken[1]), "the key the sink took was invalidated"
    held = target.read_text().strip().split(":")
    assert valid(world, held[0], held[1])
    status = json.loads(_run(world, config, "status", "-o", "json").stdout)["sources"]
    assert status[0]["key_id"] == held[0], "status must name the key the sink holds"
