"""A sandbox started with a clock follows it: its time, key expiry and authentication."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from elasticsearch import AuthenticationException, Elasticsearch

from rotator.clock import ManualClock
from rotator.sandbox import Sandbox

ADMIN = ("x_pack_rest_user", "x-pack-test-password")
START = datetime(2031, 5, 1, 12, tzinfo=UTC)


@pytest.fixture
def clocked() -> Iterator[tuple[Sandbox, ManualClock]]:
    clock = ManualClock(START)
    with Sandbox.start(users=[(*ADMIN, "superuser")], clock=clock) as running:
        yield running, clock


def test_the_sandbox_tells_the_time_of_its_clock(clocked: tuple[Sandbox, ManualClock]) -> None:
    sandbox, clock = clocked
    admin = Elasticsearch(sandbox.url, basic_auth=ADMIN, request_timeout=10)
    start_ms = int(START.timestamp() * 1000)
    assert sandbox.now_ms() == start_ms
    assert admin.perform_request("GET", "/_sandbox/clock").body == {"now": start_ms}
    clock.advance(timedelta(days=3))
    assert sandbox.now_ms() == start_ms + 3 * 86_400_000


def test_keys_expire_when_the_shared_clock_says_so(clocked: tuple[Sandbox, ManualClock]) -> None:
    sandbox, clock = clocked
    admin = Elasticsearch(sandbox.url, basic_auth=ADMIN, request_timeout=10)
    key = admin.security.create_api_key(name="short", expiration="1h").body
    assert key["expiration"] == int((START + timedelta(hours=1)).timestamp() * 1000)
    holder = Elasticsearch(sandbox.url, api_key=(key["id"], key["api_key"]), request_timeout=10)
    assert holder.security.authenticate().body["api_key"]["id"] == key["id"]
    clock.advance(timedelta(minutes=59))
    assert holder.security.authenticate().body["api_key"]["id"] == key["id"]
    clock.advance(timedelta(minutes=2))
    with pytest.raises(AuthenticationException):
        holder.security.authenticate()


def test_set_clock_still_moves_a_sandbox_on_a_given_clock(
    clocked: tuple[Sandbox, ManualClock],
) -> None:
    sandbox, clock = clocked
    target = START + timedelta(days=10)
    sandbox.set_clock(int(target.timestamp() * 1000))
    clock.advance(timedelta(hours=1))
    assert sandbox.now_ms() == int((target + timedelta(hours=1)).timestamp() * 1000)
