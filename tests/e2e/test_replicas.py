"""Replicas: several `rotator run` on one PostgreSQL store against one `rotator sandbox serve`.

Real time, short lifetimes (lifetime 3m, rotate_before 2m, overlap 20s, lifecycle every 2s,
lease 6s). Exactly one leader at every sample; a killed leader is replaced within the lease TTL
plus one lease tick; a leader paused longer than its lease has its next write refused and
becomes standby; no rotation ever makes a second key, and every source's delivered key is valid
at every sample.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from rotator.store.models import ApiKey, ApiKeyState, LeaseRecord
from tests.e2e.daemon_support import (
    CLOCK,
    Daemon,
    Served,
    config_text,
    delivered,
    rotator,
    served_sandbox,
    start_daemon,
    wait_for,
)

pytestmark = pytest.mark.postgres
SERVER = os.environ.get("ROTATOR_TEST_DATABASE_URL")
SOURCES = ("web", "db")
LEASE = timedelta(seconds=6)
TAKEOVER_BOUND = 6 + 2 + 4  # lease TTL + one lease tick + slack for a loaded machine


@pytest.fixture
def pg_store() -> Iterator[str]:
    if not SERVER:
        pytest.skip("replicas need PostgreSQL: set ROTATOR_TEST_DATABASE_URL")
    schema = f"rotator_replicas_{uuid.uuid4().hex[:10]}"
    admin = create_engine(SERVER)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(SERVER).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@dataclass
class Cluster:
    """The daemons, the store they share, and what the samples saw."""

    served: Served
    config: Path
    keys: Path
    engine: Engine
    daemons: list[Daemon] = field(default_factory=list)
    killed: list[Daemon] = field(default_factory=list)
    samples: int = 0
    delivered_ids: dict[str, set[str]] = field(default_factory=dict)

    def lease(self) -> tuple[str, int, datetime] | None:
        with Session(self.engine) as session:
            row = session.get(LeaseRecord, "lifecycle")
            return None if row is None else (row.holder, row.epoch, row.expires_at)

    def leader(self) -> Daemon | None:
        lease = self.lease()
        if lease is None or lease[2] <= CLOCK.now():
            return None
        return next((d for d in self.daemons if lease[0].endswith(f":{d.pid}")), None)

    def sample(self) -> None:
        """One sample: at most one live lease, held by a running daemon; every delivered key valid."""
        self.samples += 1
        lease = self.lease()
        if lease is not None and lease[2] > CLOCK.now():
            # A killed leader's lease stays in the row until it expires; nobody acts under it.
            started = [*self.daemons, *self.killed]
            holders = [d for d in started if lease[0].endswith(f":{d.pid}")]
            assert len(holders) == 1, f"the lease names {lease[0]}, none of the daemons"
        for source in SOURCES:
            held = delivered(self.keys, source)
            if held is None:
                continue
            assert self.served.valid(*held), f"{source}'s delivered key {held[0]} is not valid"
            self.delivered_ids.setdefault(source, set()).add(held[0])

    def watch(self, seconds: float, until: object = None) -> None:
        deadline = CLOCK.monotonic() + seconds
        while CLOCK.monotonic() < deadline:
            self.sample()
            if callable(until) and until():
                return
            CLOCK.sleep(0.5)

    def rotations(self, source: str) -> int:
        return len(self.delivered_ids.get(source, set())) - 1


@pytest.fixture
def cluster(tmp_path: Path, pg_store: str) -> Iterator[Cluster]:
    with served_sandbox(SOURCES) as served:
        keys = tmp_path / "keys"
        keys.mkdir(mode=0o700)
        config = tmp_path / "rotator.yaml"
        config.write_text(
            config_text(
                served.url,
                pg_store,
                keys,
                SOURCES,
                lifetime="3m",
                rotate_before="2m",
                overlap="20s",
            )
        )
        upgraded = rotator(config, served.password, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        engine = create_engine(pg_store)
        running = Cluster(served, config, keys, engine)
        try:
            yield running
        finally:
            for daemon in running.daemons:
                if daemon.process.poll() is None:
                    os.kill(daemon.pid, signal.SIGCONT)
                    daemon.stop()
            engine.dispose()


def start(cluster: Cluster, count: int) -> None:
    for n in range(count):
        cluster.daemons.append(
            start_daemon(cluster.config, cluster.served.password, f"replica-{n}")
        )


def provisioned(cluster: Cluster) -> bool:
    return all(delivered(cluster.keys, s) for s in SOURCES)


def assert_no_second_key_and_nothing_untracked(cluster: Cluster) -> None:
    keys = cluster.served.rotator_keys()
    per_rotation = Counter(k["metadata"].get("rotation_id") for k in keys)
    assert max(per_rotation.values()) == 1, f"a rotation made two keys: {per_rotation}"
    with Session(cluster.engine) as session:
        tracked = {
            r.es_id
            for r in session.query(ApiKey).all()
            if r.state in (ApiKeyState.ACTIVE, ApiKeyState.RETIRING)
        }
    untracked = {k["id"] for k in keys if not k["invalidated"]} - tracked
    assert not untracked, f"valid keys nobody tracks: {untracked}"


def kill_leader(cluster: Cluster) -> Daemon:
    leader = wait_for(cluster.leader, 10, "a leader")
    os.kill(leader.pid, signal.SIGKILL)
    leader.process.wait(timeout=10)
    cluster.daemons.remove(leader)
    cluster.killed.append(leader)
    return leader


def test_two_replicas_one_leader_and_a_takeover_after_kill_9(cluster: Cluster) -> None:
    start(cluster, 2)
    cluster.watch(40, until=lambda: provisioned(cluster))
    assert provisioned(cluster)
    killed = kill_leader(cluster)
    killed_at = CLOCK.monotonic()
    cluster.watch(TAKEOVER_BOUND + 2, until=lambda: cluster.leader() is not None)
    successor = cluster.leader()
    assert successor is not None, "no standby took over"
    assert successor.pid != killed.pid
    assert CLOCK.monotonic() - killed_at <= TAKEOVER_BOUND
    cluster.watch(90, until=lambda: all(cluster.rotations(s) >= 1 for s in SOURCES))
    assert all(cluster.rotations(s) >= 1 for s in SOURCES), cluster.delivered_ids
    assert_no_second_key_and_nothing_untracked(cluster)


def test_three_replicas_kill_pause_and_three_rotations(cluster: Cluster) -> None:
    start(cluster, 3)
    cluster.watch(40, until=lambda: provisioned(cluster))
    assert provisioned(cluster)
    cluster.watch(75, until=lambda: all(cluster.rotations(s) >= 1 for s in SOURCES))
    killed = kill_leader(cluster)
    cluster.watch(TAKEOVER_BOUND + 2, until=lambda: cluster.leader() is not None)
    paused = cluster.leader()
    assert paused is not None
    assert paused.pid != killed.pid
    os.kill(paused.pid, signal.SIGSTOP)  # longer than the lease: someone else takes over
    try:
        cluster.watch(
            LEASE.total_seconds() * 2 + 2,
            until=lambda: (now := cluster.leader()) is not None and now is not paused,
        )
        successor = cluster.leader()
        assert successor is not None
        assert successor is not paused
    finally:
        os.kill(paused.pid, signal.SIGCONT)
    wait_for(
        lambda: "leader_lost" in paused.names(),
        20,
        "the paused leader to find its lease lost",
    )
    assert paused.process.poll() is None, "a leader that lost its lease stays up as standby"
    cluster.watch(150, until=lambda: all(cluster.rotations(s) >= 3 for s in SOURCES))
    assert all(cluster.rotations(s) >= 3 for s in SOURCES), cluster.delivered_ids
    assert cluster.leader() is successor
    for daemon in list(cluster.daemons):
        assert daemon.stop() == 0, daemon.log_path.read_text()[-2000:]
    assert_no_second_key_and_nothing_untracked(cluster)
    assert cluster.samples > 100
