"""A sandbox per test module, wiped before each test that asks for it, and a superuser client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from rotator.sandbox import Sandbox

ADMIN = ("x_pack_rest_user", "x-pack-test-password")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox.start(users=[(*ADMIN, "superuser")]) as running:
        yield running


@pytest.fixture
def clean(sandbox: Sandbox) -> None:
    sandbox.reset()


@pytest.fixture
def es(sandbox: Sandbox) -> Elasticsearch:
    return Elasticsearch(sandbox.url, basic_auth=ADMIN, request_timeout=10)
