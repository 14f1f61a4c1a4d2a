"""Under injected Elasticsearch faults (20% of security requests fail, some answers are lost),
every source converges to one valid delivered key within six runs, and no key is left behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch
from sqlalchemy.orm import Session

from rotator.config import parse_config
from rotator.errors import RotatorError
from rotator.model import specs_from_config
from rotator.store.models import ApiKey, ApiKeyState
from tests.e2e.conftest import SOURCES, World, config_text
from tests.reliability.test_rotation_failures import valid_untracked

RUNS = 6


def faults(seed: int) -> list[dict[str, object]]:
    return [
        {
            "method": "PUT",
            "path": "/_security/api_key",
            "truncate": True,
            "probability": 0.1,
            "seed": seed,
        },
        {"path": "/_security/*", "status": 503, "probability": 0.2, "seed": seed + 1000},
    ]


def healthy(world: World) -> bool:
    with Session(world.engine) as session:
        active = {
            r.source_name: r.es_id
            for r in session.query(ApiKey).all()
            if r.state is ApiKeyState.ACTIVE
        }
    if sorted(active) != sorted(SOURCES):
        return False
    for source in SOURCES:
        key_id, secret = world.delivered(source)
        if key_id != active[source]:
            return False
        me = Elasticsearch(world.sandbox.url, api_key=(key_id, secret)).security.authenticate()
        if me["api_key"]["id"] != key_id:
            return False
    return True


def converge(world: World, specs: list, runs: int = RUNS) -> int:  # type: ignore[type-arg]
    lifecycle = world.lifecycle()
    for attempt in range(1, runs + 1):
        try:
            report = lifecycle.run(specs)
        except RotatorError:
            report = None  # Elasticsearch kept failing while gathering: the run changed nothing
        if report is not None and not report.failed and healthy(world):
            return attempt
        world.advance(timedelta(minutes=20))  # past any backoff of a few failures
    return 0


@pytest.mark.parametrize("retries", [0, 2], ids=["client-retries-0", "client-retries-2"])
@pytest.mark.parametrize("seed", range(6))
def test_provisioning_and_rotation_converge_under_faults(
    world: World, seed: int, retries: int
) -> None:
    text = config_text(world.sandbox.url, world.out, str(world.engine.url)).replace(
        "max_retries: 0", f"max_retries: {retries}"
    )
    specs = specs_from_config(parse_config(text))
    world.config = parse_config(text)
    world.sandbox.add_faults(faults(seed))
    assert converge(world, specs), "provisioning did not converge within six runs"
    world.advance(timedelta(days=20, minutes=1))  # every key is due for renewal
    assert converge(world, specs), "rotation did not converge within six runs"
    world.sandbox.clear_faults()
    world.lifecycle().run(specs)
    assert healthy(world)
    assert not valid_untracked(world), "a key was left valid that nobody tracks"
