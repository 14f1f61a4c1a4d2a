"""A sandbox, a store and a rotator identity holding only what the README recommends."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from sqlalchemy.engine import Engine

from rotator.app import build_lifecycle
from rotator.clock import ManualClock
from rotator.config import Config, parse_config
from rotator.jobs.lifecycle import Lifecycle
from rotator.model import SourceSpec, specs_from_config
from rotator.sandbox import Sandbox
from rotator.store import db

ADMIN = ("x_pack_rest_user", "x-pack-test-password")
SOURCES = ("web", "db", "app")
# What the README tells operators to give rotator: manage_own_api_key, plus exactly the
# privileges it hands out (a key can never hold more than its owner).
ROTATOR_ROLE = {
    "cluster": ["manage_own_api_key", "monitor"],
    "indices": [
        {
            "names": [f"logs-{s}-default" for s in SOURCES],
            "privileges": ["create_doc", "auto_configure"],
        }
    ],
}


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox.start(users=[(*ADMIN, "superuser")]) as running:
        yield running


@dataclass
class World:
    """Everything one end-to-end test works with."""

    sandbox: Sandbox
    clock: ManualClock
    config: Config
    engine: Engine
    out: Path
    password: str

    @property
    def specs(self) -> list[SourceSpec]:
        return specs_from_config(self.config)

    def lifecycle(self, **kw: object) -> Lifecycle:
        return build_lifecycle(self.config, self.engine, self.clock, **kw)  # type: ignore[arg-type]

    def advance(self, delta: timedelta) -> None:
        """Move rotator's clock and the sandbox's together."""
        self.clock.advance(delta)
        self.sandbox.set_clock(int(self.clock.now().timestamp() * 1000))

    def admin(self) -> Elasticsearch:
        return Elasticsearch(self.sandbox.url, basic_auth=ADMIN)

    def key_file(self, source: str) -> Path:
        return self.out / f"{source}.key"

    def delivered(self, source: str) -> tuple[str, str]:
        key_id, secret = self.key_file(source).read_text().strip().split(":")
        return key_id, secret

    def as_key(self, source: str) -> Elasticsearch:
        key_id, secret = self.delivered(source)
        return Elasticsearch(self.sandbox.url, api_key=(key_id, secret))


def config_text(url: str, out: Path, store: str, sources: tuple[str, ...] = SOURCES) -> str:
    lines = [
        "elasticsearch:",
        f"  hosts: ['{url}']",
        "  username: rotator",
        "  password_env: ROTATOR_TEST_ES_PASSWORD",
        "  max_retries: 0",
        f"store: {{url: '{store}'}}",
        "defaults: {lifetime: 30d, rotate_before: 10d, overlap: 24h, jitter: 0s}",
        "service: {backoff_initial: 1m, backoff_max: 1h, max_parallel: 3}",
        "sources:",
    ]
    for name in sources:
        lines += [
            f"  - name: {name}",
            "    preset: logs-writer",
            f"    dataset: {name}",
            "    deliver:",
            f"      - {{type: file, path: '{out / (name + '.key')}', format: 'id:api_key'}}",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def world(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    sandbox.reset()
    sandbox.clear_faults()  # a test that failed midway must not leave its faults to the next
    start = datetime(2030, 1, 1, tzinfo=UTC)
    sandbox.set_clock(int(start.timestamp() * 1000))
    password = secrets.token_urlsafe(16)
    admin = Elasticsearch(sandbox.url, basic_auth=ADMIN)
    admin.security.put_role(name="rotator", **ROTATOR_ROLE)
    admin.security.put_user(username="rotator", password=password, roles=["rotator"])
    monkeypatch.setenv("ROTATOR_TEST_ES_PASSWORD", password)
    out = tmp_path / "keys"
    out.mkdir()
    store = f"sqlite:///{tmp_path / 'rotator.db'}"
    config = parse_config(config_text(sandbox.url, out, store))
    engine = db.make_engine(store)
    db.upgrade(engine)
    yield World(sandbox, ManualClock(start), config, engine, out, password)
    engine.dispose()
    sandbox.clear_faults()
    sandbox.state.clock.reset()
