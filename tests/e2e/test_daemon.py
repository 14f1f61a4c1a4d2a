"""`rotator run` for real: a daemon process against `rotator sandbox serve`, short real lifetimes.

Nothing here sleeps to make time pass for the code under test: keys live for seconds, and the
tests poll for what the daemon does.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from rotator.store.models import ApiKey, ApiKeyState, LeaseRecord, Rotation
from tests.e2e.daemon_support import (
    CLOCK,
    Served,
    config_text,
    delivered,
    rotator,
    served_sandbox,
    start_daemon,
    wait_for,
)

SOURCES = ("web", "db", "app")


@pytest.fixture
def served() -> Iterator[Served]:
    with served_sandbox(SOURCES) as running:
        yield running


def setup(
    tmp_path: Path, served: Served, sources: tuple[str, ...] = ("web", "db"), **kw: object
) -> tuple[Path, Path, str]:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    store = f"sqlite:///{tmp_path / 'rotator.db'}"
    defaults = {"lifetime": "30s", "rotate_before": "20s", "overlap": "8s"}
    config = tmp_path / "rotator.yaml"
    config.write_text(config_text(served.url, store, keys, sources, **{**defaults, **kw}))  # type: ignore[arg-type]
    upgraded = rotator(config, served.password, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    return config, keys, store


def rows(store: str) -> list[ApiKey]:
    engine = create_engine(store)
    try:
        with Session(engine) as session:
            found = session.query(ApiKey).all()
            session.expunge_all()
            return found
    finally:
        engine.dispose()


def open_rotations(store: str) -> list[str]:
    engine = create_engine(store)
    try:
        with Session(engine) as session:
            return [r.id for r in session.query(Rotation).all() if r.finished_at is None]
    finally:
        engine.dispose()


def untracked_valid(served: Served, store: str) -> set[str]:
    tracked = {
        r.es_id for r in rows(store) if r.state in (ApiKeyState.ACTIVE, ApiKeyState.RETIRING)
    }
    return {k["id"] for k in served.rotator_keys() if not k["invalidated"]} - tracked


def test_run_provisions_rotates_and_stops_cleanly(tmp_path: Path, served: Served) -> None:
    config, keys, store = setup(tmp_path, served)
    daemon = start_daemon(config, served.password, "only")
    try:
        first = wait_for(
            lambda: delivered(keys, "web") and delivered(keys, "db") and delivered(keys, "web"),
            30,
            "provisioning",
        )
        assert served.valid(*first)
        rotated = wait_for(lambda: (d := delivered(keys, "web")) != first and d, 40, "a rotation")
        assert served.valid(*rotated)
        assert served.valid(*first), "the previous key must serve out its overlap"
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log_path.read_text()[-3000:]
    names = daemon.names()
    assert "leader_acquired" in names
    assert "job_finished" in names
    assert names[-2:] == ["leader_released", "stopped"]
    engine = create_engine(store)
    with Session(engine) as session:
        lease = session.get(LeaseRecord, "lifecycle")
        assert lease is not None
        assert lease.expires_at <= CLOCK.now()  # released, not left to expire
    engine.dispose()


def test_sigterm_during_a_slow_delivery_finishes_the_rotation_and_exits_0(
    tmp_path: Path, served: Served
) -> None:
    started = tmp_path / "sink-started"
    slow = {"type": "exec", "argv": ["/bin/sh", "-c", f"cat > /dev/null; touch {started}; sleep 4"]}
    config, keys, store = setup(tmp_path, served, ("web",), extra_sinks={"web": [slow]})
    daemon = start_daemon(config, served.password, "slow")
    wait_for(started.exists, 30, "the slow sink to start")
    daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(timeout=40)
    assert code == 0, daemon.log_path.read_text()[-3000:]
    held = delivered(keys, "web")
    assert held is not None
    assert served.valid(*held)
    active = [r.es_id for r in rows(store) if r.state is ApiKeyState.ACTIVE]
    assert active == [held[0]], "the rotation in progress must have been finished"
    assert open_rotations(store) == []
    assert not untracked_valid(served, store)


def test_sighup_with_a_bad_config_keeps_the_old_one(tmp_path: Path, served: Served) -> None:
    config, keys, _store = setup(tmp_path, served, ("web",))
    good = config.read_text()
    daemon = start_daemon(config, served.password, "hup")
    try:
        wait_for(lambda: delivered(keys, "web"), 30, "provisioning")
        config.write_text(good.replace("name: web", "name: 'Not A Name'"))
        daemon.process.send_signal(signal.SIGHUP)
        refused = wait_for(
            lambda: [e for e in daemon.events() if e.get("message") == "config_reload_refused"],
            15,
            "the reload to be refused",
        )
        assert "sources" in json.dumps(refused)
        assert daemon.process.poll() is None, "a bad config must not stop the daemon"
        config.write_text(
            good.replace(
                "sources:\n",
                "sources:\n  - {name: app, preset: logs-writer, dataset: app, deliver: [{type: file, path: '"
                + str(keys / "app.key")
                + "', format: 'id:api_key'}]}\n",
            )
        )
        daemon.process.send_signal(signal.SIGHUP)
        app = wait_for(lambda: delivered(keys, "app"), 30, "the reloaded config's new source")
        assert served.valid(*app)
    finally:
        assert daemon.stop() == 0


def test_a_once_longer_than_the_lease_keeps_its_lease(tmp_path: Path, served: Served) -> None:
    slow = {"type": "exec", "argv": ["/bin/sh", "-c", "cat > /dev/null; sleep 5"]}
    config, _keys, store = setup(
        tmp_path, served, ("web",), lease_ttl="2s", extra_sinks={"web": [slow]}
    )
    started = CLOCK.monotonic()
    once = rotator(config, served.password, "once", "-o", "json")
    assert CLOCK.monotonic() - started > 4  # it outlived its lease's ttl twice over
    assert once.returncode == 0, once.stdout + once.stderr
    assert [r.state for r in rows(store)] == [ApiKeyState.ACTIVE]
    assert "leader.lost" not in rotator(config, served.password, "status", "-o", "json").stdout


def test_the_preflight_names_each_privilege_rotator_lacks(tmp_path: Path, served: Served) -> None:
    config, _keys, _store = setup(tmp_path, served, ("web",))
    served.client().security.put_role(
        name="rotator",
        cluster=["manage_own_api_key", "monitor"],
        indices=[{"names": ["logs-web-default"], "privileges": ["create_doc"]}],
    )
    result = rotator(config, served.password, "run", timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert (
        "sources.web: rotator's role lacks auto_configure on logs-web-default, which the "
        "source's key is given (Elasticsearch would silently leave it out)"
    ) in lines
    assert lines[-1] == "rotator run: 1 problem(s) found before starting; nothing was scheduled"


def test_a_second_daemon_on_the_same_sqlite_store_stays_standby(
    tmp_path: Path, served: Served
) -> None:
    config, keys, _store = setup(tmp_path, served, ("web",))
    first = start_daemon(config, served.password, "first")
    try:
        wait_for(lambda: delivered(keys, "web"), 30, "provisioning")
        second = start_daemon(config, served.password, "second")
        try:
            wait_for(lambda: "job_scheduled" in second.names(), 30, "the second daemon to start")
            CLOCK.sleep(4)  # two lease ticks: it must not take the lease
            assert "leader_acquired" not in second.names()
            assert second.process.poll() is None
            assert "leader_acquired" in first.names()
        finally:
            assert second.stop() == 0
    finally:
        assert first.stop() == 0
