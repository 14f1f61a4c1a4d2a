"""The Elasticsearch the contract tests talk to: the sandbox, or a real cluster when configured.

The KeyAuthority contract (``subject``) runs over three backends: the in-memory fake
(``tests.fakes``), and ``ElasticKeyAuthority`` over HTTP to the sandbox, or to a real cluster
instead of the sandbox when one is configured. Set ``ROTATOR_TEST_ES_URL`` (with ``ROTATOR_TEST_ES_USERNAME`` and ``ROTATOR_TEST_ES_PASSWORD`` of a
superuser, and optionally ``ROTATOR_TEST_ES_CA_CERTS``) to run the same tests against a real
cluster. The tests create their own user and role with a random suffix and remove them afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest
from elasticsearch import Elasticsearch

from rotator.clock import ManualClock, SystemClock
from rotator.elastic import ElasticKeyAuthority
from rotator.ports import KeyAuthority
from rotator.sandbox import Sandbox
from tests.fakes import FakeKeyAuthority

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
        if self.ca_certs is not None:
            auth["ca_certs"] = self.ca_certs
        return Elasticsearch(self.url, request_timeout=30, **auth)  # type: ignore[arg-type]


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


def new_identity(kind: str = "contract") -> RotatorIdentity:
    """A fresh identity with a random suffix (nothing is created anywhere yet)."""
    suffix = secrets.token_hex(4)
    return RotatorIdentity(
        f"rotator-{kind}-{suffix}",
        secrets.token_urlsafe(16),
        f"rotator_{kind}_{suffix}",
        f"{kind}-{suffix}",
    )


def rotator_role(identity: RotatorIdentity) -> dict[str, Any]:
    """The identity's role: manage_own_api_key and the ingest privileges on its own indices."""
    return {
        "cluster": ["manage_own_api_key"],
        "indices": [
            {
                "names": [f"logs-{identity.index_prefix}*"],
                "privileges": ["create_doc", "auto_configure"],
            }
        ],
    }


def _put_identity(admin: Elasticsearch, identity: RotatorIdentity) -> None:
    admin.security.put_role(name=identity.role, **rotator_role(identity))
    admin.security.put_user(
        username=identity.username, password=identity.password, roles=[identity.role]
    )


def _drop_identity(admin: Elasticsearch, identity: RotatorIdentity) -> None:
    admin.security.invalidate_api_key(username=identity.username)
    admin.security.delete_user(username=identity.username)
    admin.security.delete_role(name=identity.role)


@pytest.fixture
def rotator_user(cluster: Cluster) -> Iterator[RotatorIdentity]:
    identity = new_identity()
    admin = cluster.client()
    _put_identity(admin, identity)
    yield identity
    _drop_identity(admin, identity)


class Subject(Protocol):
    """A KeyAuthority under contract, acting as ``identity``, and what its backend controls."""

    backend: str
    identity: RotatorIdentity
    port: KeyAuthority

    def stranger(self) -> KeyAuthority:
        """The same service as another user holding the same kind of role."""
        ...

    def set_role(self, role: dict[str, Any]) -> None:
        """Replace the identity's role (descriptor body)."""
        ...

    def pass_time(self, delta: timedelta) -> None:
        """Let ``delta`` pass on the backend's clock."""
        ...


class FakeSubject:
    """The in-memory fake on a manual clock."""

    backend = "fake"

    def __init__(self) -> None:
        self.identity = new_identity()
        self.clock = ManualClock(datetime(2030, 1, 1, tzinfo=UTC))
        self.fake = FakeKeyAuthority(
            self.clock,
            username=self.identity.username,
            roles={self.identity.role: rotator_role(self.identity)},
        )
        self.port: KeyAuthority = self.fake

    def stranger(self) -> KeyAuthority:
        other = new_identity("stranger")
        return self.fake.colleague(other.username, {other.role: rotator_role(other)})

    def set_role(self, role: dict[str, Any]) -> None:
        self.fake.set_roles({self.identity.role: role})

    def pass_time(self, delta: timedelta) -> None:
        self.clock.advance(delta)


class HttpSubject:
    """ElasticKeyAuthority over HTTP to the sandbox or the configured cluster."""

    def __init__(self, cluster: Cluster, identity: RotatorIdentity) -> None:
        self.backend = "sandbox" if cluster.sandbox is not None else "elasticsearch"
        self.cluster = cluster
        self.identity = identity
        self.port: KeyAuthority = self.authority_for(identity)
        self.strangers: list[RotatorIdentity] = []

    def authority_for(self, identity: RotatorIdentity) -> ElasticKeyAuthority:
        """The port as ``identity``."""
        client = self.cluster.client(basic_auth=(identity.username, identity.password))
        return ElasticKeyAuthority(client)

    def stranger(self) -> KeyAuthority:
        other = new_identity("stranger")
        _put_identity(self.cluster.client(), other)
        self.strangers.append(other)
        return self.authority_for(other)

    def set_role(self, role: dict[str, Any]) -> None:
        self.cluster.client().security.put_role(name=self.identity.role, **role)

    def pass_time(self, delta: timedelta) -> None:
        if self.cluster.sandbox is not None:
            self.cluster.sandbox.advance(delta)
        else:
            SystemClock().sleep(delta.total_seconds())

    def close(self) -> None:
        """Remove the strangers made for the test."""
        for other in self.strangers:
            _drop_identity(self.cluster.client(), other)


def _http_backend() -> str:
    return "elasticsearch" if os.environ.get("ROTATOR_TEST_ES_URL") else "sandbox"


@pytest.fixture(params=["fake", _http_backend()])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    """The KeyAuthority contract's subject, once per backend."""
    if request.param == "fake":
        yield FakeSubject()
        return
    cluster = request.getfixturevalue("cluster")
    identity = request.getfixturevalue("rotator_user")
    http = HttpSubject(cluster, identity)
    yield http
    http.close()
