"""The Elasticsearch the contract tests talk to: the sandbox, or a real cluster when configured.

Set ``ROTATOR_TEST_ES_URL`` (with ``ROTATOR_TEST_ES_USERNAME`` and ``ROTATOR_TEST_ES_PASSWORD`` of a
superuser, and optionally ``ROTATOR_TEST_ES_CA_CERTS``) to run the same tests against a real
cluster. The tests create their own user and role with a random suffix and remove them afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from elasticsearch import Elasticsearch

from rotator.sandbox import Sandbox

SUPERUSER = ("x_pack_rest_user", "x-pack-test-password")


@dataclass(frozen=True)
class Cluster:
    """How to reach the cluster under test and whether it is the sandbox."""

    url: str
    username: str
    password: str
    ca_certs: str | None
    sandbox: Sandbox | None

    def client(self, **auth: object) -> Elasticsearch:
        """A client with the given auth (the superuser's when none is given)."""
        if not auth:
            auth = {"basic_auth": (self.username, self.password)}
        return Elasticsearch(
            self.url,
            ca_certs=self.ca_certs,
            request_timeout=30,
            **auth,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    url = os.environ.get("ROTATOR_TEST_ES_URL")
    if url:
        yield Cluster(
            url,
            os.environ.get("ROTATOR_TEST_ES_USERNAME", "elastic"),
            os.environ["ROTATOR_TEST_ES_PASSWORD"],
            os.environ.get("ROTATOR_TEST_ES_CA_CERTS"),
            None,
        )
        return
    with Sandbox.start(users=[(*SUPERUSER, "superuser")]) as sandbox:
        yield Cluster(sandbox.url, *SUPERUSER, None, sandbox)


@dataclass(frozen=True)
class RotatorIdentity:
    """A user holding only manage_own_api_key plus the index privileges it hands out."""

    username: str
    password: str
    role: str
    index_prefix: str


@pytest.fixture
def rotator_user(cluster: Cluster) -> Iterator[RotatorIdentity]:
    suffix = secrets.token_hex(4)
    identity = RotatorIdentity(
        f"rotator-contract-{suffix}",
        secrets.token_urlsafe(16),
        f"rotator_contract_{suffix}",
        f"contract-{suffix}",
    )
    admin = cluster.client()
    admin.security.put_role(
        name=identity.role,
        cluster=["manage_own_api_key"],
        indices=[
            {
                "names": [f"logs-{identity.index_prefix}*"],
                "privileges": ["create_doc", "auto_configure"],
            }
        ],
    )
    admin.security.put_user(
        username=identity.username, password=identity.password, roles=[identity.role]
    )
    yield identity
    admin.security.invalidate_api_key(username=identity.username)
    admin.security.delete_user(username=identity.username)
    admin.security.delete_role(name=identity.role)
