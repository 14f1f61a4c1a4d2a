"""Ports: the protocols the executor works through (Elasticsearch, sinks), and the credential."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Credential:
    """A new API key's credential; it lives only in memory, from creation to delivery.

    ``repr`` and ``str`` never show the secret, so a credential in a log line or an exception
    text leaks nothing.
    """

    id: str
    name: str
    api_key: str = field(repr=False)
    encoded: str = field(repr=False)
    source: str
    expiration: datetime | None

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the secret: what the store keeps instead of it."""
        return secret_fingerprint(self.api_key)

    def __str__(self) -> str:
        return f"Credential(id={self.id}, name={self.name}, source={self.source})"


def secret_fingerprint(secret: str) -> str:
    """SHA-256 hex of a secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class DeliveryReceipt:
    """What a sink reports after a successful delivery (no secret).

    ``state`` is what the sink can later check the delivered credential against (for a file:
    mode, owner and a keyed hash of the content); it is JSON-ready and kept in the store, so it
    never holds the secret or an unkeyed hash of it.
    """

    sink: str
    target: str
    detail: str = ""
    state: Mapping[str, Any] = field(default_factory=dict)


class Sink(Protocol):
    """Somewhere a source reads its credential from."""

    @property
    def name(self) -> str:
        """A short description for logs and the audit trail (``file:/etc/x``)."""
        ...

    def deliver(self, credential: Credential) -> DeliveryReceipt:
        """Hand the credential over; raise DeliveryFailed when it did not arrive."""
        ...

    def acknowledge(self, credential: Credential) -> bool:
        """Whether the consumer has moved to this credential (True when no ack is defined)."""
        ...

    def check(self, state: Mapping[str, Any]) -> str | None:
        """Whether what was delivered is still in place, given the receipt's ``state``.

        Returns None when it is (or when the sink cannot tell, like exec and webhook), else one
        line saying what changed (``mode is 0644, was 0600``); never the secret.
        """
        ...


@dataclass(frozen=True)
class KeyInfo:
    """What Elasticsearch says about one key (no secret)."""

    id: str
    name: str
    creation: datetime
    expiration: datetime | None
    invalidated: bool
    username: str
    metadata: Mapping[str, Any]
    role_descriptors: Mapping[str, Any] = field(default_factory=dict)


class KeyAuthority(Protocol):
    """Elasticsearch's API-key service as rotator uses it."""

    def create(
        self,
        name: str,
        expiration_seconds: int,
        role_descriptors: Mapping[str, Any],
        metadata: Mapping[str, Any],
    ) -> Credential:
        """Create a key owned by rotator's identity."""
        ...

    def update(self, key_id: str, role_descriptors: Mapping[str, Any]) -> bool:
        """Replace a key's role descriptors; True when something changed."""
        ...

    def invalidate(self, ids: Sequence[str]) -> list[str]:
        """Invalidate rotator's own keys; returns the ids invalidated now."""
        ...

    def get(self, ids: Sequence[str]) -> dict[str, KeyInfo]:
        """Look keys up by id; unknown ids are absent from the result."""
        ...

    def find_by_metadata(
        self, field: str, value: str, *, valid_only: bool = False
    ) -> list[KeyInfo]:
        """Rotator's own keys whose ``metadata.<field>`` equals ``value`` (optionally only the
        ones not invalidated)."""
        ...

    def check_privileges(self, credential: Credential, body: Mapping[str, Any]) -> dict[str, Any]:
        """Authenticate as the key and ask ``_has_privileges``; returns the answer."""
        ...

    def check_own_privileges(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Ask ``_has_privileges`` as rotator's own identity (a key never holds more)."""
        ...
