"""Notifications end to end: a source whose delivery fails against the sandbox tells a signed
webhook once per failure streak, across lifecycle runs, with retries through the clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from rotator.app import build_lifecycle
from rotator.config import Config, parse_config
from rotator.model import specs_from_config
from rotator.store.models import NoticeSent
from tests.e2e.conftest import World, config_text
from tests.unit.test_notify_sinks import HMAC_SECRET, SECRET_ENV, Receiver, verify


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv(SECRET_ENV, HMAC_SECRET)
    running = Receiver()
    yield running
    running.stop()


def notifying_config(world: World, receiver: Receiver) -> Config:
    text = config_text(world.sandbox.url, world.out, str(world.engine.url), sources=("web",))
    sink = {
        "type": "webhook",
        "name": "ops-hook",
        "url": receiver.url,
        "hmac_secret_env": SECRET_ENV,
        "allow_insecure": True,
        "kinds": ["rotation_failed"],
        "retries": 3,
    }
    text += f"notify:\n  renotify_after: null\n  sinks:\n    - {json.dumps(sink)}\n"
    return parse_config(text)


def accepted(receiver: Receiver) -> list[dict[str, object]]:
    """The notices the receiver took (answered 2xx), each checked for its signature."""
    taken = []
    for request, status in zip(receiver.requests, receiver.answered, strict=True):
        assert verify(request, max_age=10**10), "every request is signed"
        if 200 <= status < 300:
            taken.append(json.loads(request.body))
    return taken


def test_a_failing_source_is_notified_once_per_failure_streak(
    world: World, receiver: Receiver
) -> None:
    config = notifying_config(world, receiver)
    specs = specs_from_config(config)
    blocked = world.key_file("web")
    blocked.mkdir()  # the file sink cannot put its file where a directory is

    receiver.statuses = [503, 503]  # the receiver fails twice, then accepts
    started = world.clock.monotonic()
    report = build_lifecycle(config, world.engine, world.clock).run(specs)
    assert [o.ok for o in report.outcomes] == [False]
    assert len(receiver.requests) == 3
    assert world.clock.monotonic() - started >= 3.0  # waited 1s and 2s between attempts

    world.advance(timedelta(minutes=5))  # past the source's backoff: it fails again
    report = build_lifecycle(config, world.engine, world.clock).run(specs)
    assert [o.ok for o in report.outcomes] == [False]
    assert len(receiver.requests) == 3  # the same condition: nothing new sent

    blocked.rmdir()
    world.advance(timedelta(minutes=10))
    report = build_lifecycle(config, world.engine, world.clock).run(specs)
    assert [o.ok for o in report.outcomes] == [True]
    assert blocked.is_file()

    blocked.unlink()
    blocked.mkdir()
    world.advance(timedelta(days=21))  # the key is due for rotation, which fails again
    report = build_lifecycle(config, world.engine, world.clock).run(specs)
    assert [o.ok for o in report.outcomes] == [False]

    taken = accepted(receiver)
    assert [(n["kind"], n["subject"], n["reason"]) for n in taken] == [
        ("rotation_failed", "web", "new"),
        ("rotation_failed", "web", "recurred"),
    ]
    details = [n["details"] for n in taken]
    assert [d["failures"] for d in details] == [1, 1]  # type: ignore[index]
    assert all(d["job"] == "lifecycle" and d["run_id"] for d in details)  # type: ignore[index]
    with Session(world.engine) as session:
        row = session.get(NoticeSent, ("ops-hook", "rotation_failed:web"))
        assert row is not None
        assert row.sent_count == 2
