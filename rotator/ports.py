"""Ports: the protocols the executor works through (Elasticsearch, sinks, the store's units of
work), and the credential."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from rotator.errors import AuthorityRejected

if TYPE_CHECKING:
    from rotator.states import KeyState, RotationState
    from rotator.store.inventory import InventoryRepository
    from rotator.store.models import ApiKey, Rotation, Source
    from rotator.store.uow import Fence
    from rotator.vocabulary import AuditAction, AuditOutcome


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
    type: str = "rest"  # or "cross_cluster"
    realm: str = ""  # the owner's realm name
    realm_type: str | None = None  # "native", "file", "reserved", ... when Elasticsearch says
    invalidation: datetime | None = None  # when it was invalidated, when Elasticsearch says


@dataclass(frozen=True)
class KeyPage:
    """One page of a key query: the keys, the total matching, and where the next page starts
    (None after the last)."""

    keys: list[KeyInfo]
    total: int
    after: list[Any] | None


@dataclass(frozen=True)
class InvalidationResult:
    """What one invalidate request did to each id it named.

    ``errors`` maps an id to the reason Elasticsearch gave; a reason that names none of the ids
    is kept under ``""``. An id in no list was not found valid: unknown, another owner's, or
    already invalidated (Elasticsearch leaves those out of its answer).
    """

    invalidated: tuple[str, ...] = ()
    previously_invalidated: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)

    def not_found(self, asked: Sequence[str]) -> list[str]:
        """The ids of ``asked`` that no list names."""
        named = {*self.invalidated, *self.previously_invalidated, *self.errors}
        return [i for i in dict.fromkeys(asked) if i not in named]

    def raise_on_error(self) -> InvalidationResult:
        """This result when no id failed.

        Raises:
            AuthorityRejected: some id could not be invalidated (the reasons, never a secret).
        """
        if self.errors:
            reasons = "; ".join(f"{i or '?'}: {r}" for i, r in self.errors.items())
            raise AuthorityRejected(f"invalidate API keys: {len(self.errors)} error(s): {reasons}")
        return self


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

    def invalidate(self, ids: Sequence[str]) -> InvalidationResult:
        """Invalidate rotator's own keys by id; the answer says what became of each id (a
        failure of one id does not fail the others; a failed request raises)."""
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

    def iter_by_metadata(self, field: str, value: str) -> Iterator[KeyInfo]:
        """The same keys as :meth:`find_by_metadata`, one page in memory at a time."""
        ...

    def check_privileges(self, credential: Credential, body: Mapping[str, Any]) -> dict[str, Any]:
        """Authenticate as the key and ask ``_has_privileges``; returns the answer."""
        ...

    def check_own_privileges(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Ask ``_has_privileges`` as rotator's own identity (a key never holds more)."""
        ...


class KeyDirectory(Protocol):
    """Every key rotator's identity may see, as the inventory reads them."""

    def whoami(self) -> dict[str, Any]:
        """The authenticated identity (``_security/_authenticate``'s answer)."""
        ...

    def query_page(
        self, query: Mapping[str, Any], *, page_size: int = 1000, after: list[Any] | None
    ) -> KeyPage:
        """One page (one request) of the keys matching ``query``, oldest first."""
        ...

    def check_own_privileges(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Ask ``_has_privileges`` as rotator's own identity."""
        ...

    def existing_users(self, names: Sequence[str]) -> set[str]:
        """Which of these native-realm users exist (needs ``read_security``)."""
        ...


# --- the store ---------------------------------------------------------------------------------
# The store's mapped rows (Source, ApiKey, Rotation) are plain data holders: a job may read and
# set their fields inside a unit of work, and what it set is written when the unit commits.


class SourceFailures(NamedTuple):
    """A source's failure condition, read for every source at once by the health check."""

    failure_count: int
    next_attempt_at: datetime | None
    last_error: str | None


class CurrentKey(NamedTuple):
    """What the health check needs of a source's current key."""

    es_id: str | None
    expires_at: datetime | None


class SourceStore(Protocol):
    """The sources' desired state, failures and backoff, as the jobs use them."""

    def get(self, name: str) -> Source | None:
        """The source called ``name``, or None."""
        ...

    def require(self, name: str) -> Source:
        """The source called ``name``; LookupError when there is none."""
        ...

    def upsert_spec(self, name: str, spec: Mapping[str, Any], now: datetime) -> Source:
        """Record a source's desired spec; a changed or retired source is updated."""
        ...

    def list_sources(self, *, include_retired: bool = False) -> list[Source]:
        """The sources by name; retired ones only when asked."""
        ...

    def fingerprints(self) -> dict[str, tuple[str, bool]]:
        """Every source's spec fingerprint and whether it is retired, in one read."""
        ...

    def failures(self) -> dict[str, SourceFailures]:
        """Every source's failure condition, in one read (no whole rows)."""
        ...

    def record_failure(
        self, name: str, error: str, *, now: datetime, next_attempt_at: datetime
    ) -> Source:
        """Count a failed attempt and hold the source back until ``next_attempt_at``."""
        ...

    def reset_failures(self, name: str, now: datetime) -> Source:
        """Clear the failure count, the last error and the backoff."""
        ...

    def bump_generation(self, name: str, now: datetime) -> int:
        """Advance the source's generation; returns the new one."""
        ...


class KeyStore(Protocol):
    """The keys rotator created, and their lifecycle (moves checked against KEY_TRANSITIONS)."""

    def add(self, key: ApiKey) -> ApiKey:
        """Insert ``key`` and give it its id."""
        ...

    def get_by_es_id(self, es_id: str) -> ApiKey | None:
        """The key Elasticsearch knows as ``es_id``, or None."""
        ...

    def current_by_source(self) -> dict[str, CurrentKey]:
        """Every source's current key (active, highest generation), read at once."""
        ...

    def current_for_source(self, source_name: str) -> ApiKey | None:
        """The source's active key of the highest generation, or None."""
        ...

    def for_source(
        self, source_name: str, states: Iterable[KeyState] | None = None
    ) -> list[ApiKey]:
        """The source's keys (optionally only in ``states``), oldest first."""
        ...

    def for_rotation(self, rotation_id: str) -> ApiKey | None:
        """The key row a rotation created, or None."""
        ...

    def live(self) -> Iterable[ApiKey]:
        """Every recorded key that is active or retiring."""
        ...

    def known_es_ids(self) -> set[str]:
        """The Elasticsearch ids of every recorded key."""
        ...

    def states_among(self, es_ids: Iterable[str]) -> dict[str, tuple[KeyState, str | None]]:
        """The state and source of each of these keys the store recorded (others are absent)."""
        ...

    def transition(self, key: ApiKey, to: KeyState, now: datetime) -> ApiKey:
        """Move ``key`` to ``to``; IllegalTransition when the lifecycle has no such move."""
        ...

    def record_created(
        self,
        key: ApiKey,
        *,
        es_id: str,
        expires_at: datetime | None,
        renewal_at: datetime | None,
        secret_fingerprint: str,
        now: datetime,
        jitter_seconds: int = 0,
    ) -> ApiKey:
        """Record what Elasticsearch returned for a new key and move it to ``created``."""
        ...

    def mark_delivery_started(self, key: ApiKey, now: datetime) -> ApiKey:
        """Stamp the moment before the first sink is called."""
        ...

    def add_receipt(self, key: ApiKey, receipt: Mapping[str, Any], now: datetime) -> ApiKey:
        """Append one sink's receipt; the first one stamps ``delivered_at``."""
        ...

    def schedule_retirement(self, key: ApiKey, *, retire_at: datetime, now: datetime) -> ApiKey:
        """Move an active key to ``retiring`` until ``retire_at``."""
        ...


class RotationStore(Protocol):
    """Rotation intents: recorded before Elasticsearch is called, resumed after a crash."""

    def start(
        self,
        source_name: str,
        reason: str,
        now: datetime,
        *,
        previous_key_es_id: str | None = None,
        state: RotationState = ...,
    ) -> Rotation:
        """Record the intent to replace a source's key, with a fresh rotation id."""
        ...

    def unfinished(self, source_name: str | None = None) -> list[Rotation]:
        """The rotations neither completed nor compensated, oldest first."""
        ...

    def all_ids(self) -> set[str]:
        """The id of every rotation the store started."""
        ...

    def advance(
        self,
        rotation: Rotation,
        state: RotationState,
        now: datetime,
        *,
        new_key_es_id: str | None = None,
    ) -> Rotation:
        """Move the rotation on; IllegalTransition when it is already finished."""
        ...

    def fail(
        self,
        rotation: Rotation,
        error: str,
        *,
        now: datetime,
        next_attempt_at: datetime | None,
    ) -> Rotation:
        """Record a failed attempt (without ``next_attempt_at``: the rotation is failed)."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the store: everything done through it commits together or not at all."""

    @property
    def sources(self) -> SourceStore:
        """The sources."""
        ...

    @property
    def keys(self) -> KeyStore:
        """The keys rotator created."""
        ...

    @property
    def rotations(self) -> RotationStore:
        """The rotations."""
        ...

    def key_row(self, row_id: int) -> ApiKey | None:
        """The key row with this id, or None."""
        ...

    def rotation_row(self, rotation_id: str) -> Rotation | None:
        """The rotation with this id, or None."""
        ...

    def audit(
        self,
        *,
        now: datetime,
        action: AuditAction,
        subject: str,
        outcome: AuditOutcome,
        details: Mapping[str, Any],
    ) -> int:
        """Append an audit event (redacted, hash-chained) in this unit; returns its sequence."""
        ...

    def audit_many(self, *, now: datetime, events: Sequence[AuditEntry]) -> None:
        """Append several events in this unit in one insert, chained in the order given."""
        ...

    @property
    def inventory(self) -> InventoryRepository:
        """The key inventory (every key the track job sees) and its sweeps."""
        ...


@dataclass(frozen=True)
class AuditEntry:
    """One audit event to append (``details`` never holds a secret; it is redacted anyway)."""

    action: AuditAction
    subject: str
    outcome: AuditOutcome
    details: Mapping[str, Any]


class UnitsOfWork(Protocol):
    """Where units of work come from, every write checked against the leader lease's fence."""

    @property
    def lost(self) -> bool:
        """Whether a write was refused because the lease is gone: the job must stop at once."""
        ...

    def fenced(self, fence: Fence) -> UnitsOfWork:
        """The same store, every write checked against ``fence`` instead."""
        ...

    def write(self) -> AbstractContextManager[UnitOfWork]:
        """A fenced unit that commits when the block ends and rolls back when it raises.

        Raises:
            LeaseLost: the writer no longer holds the leader lease; nothing is written.
        """
        ...

    def read(self) -> AbstractContextManager[UnitOfWork]:
        """A unit that only reads: whatever is changed through it is discarded."""
        ...

    def held(self) -> AbstractContextManager[None]:
        """Within the block, this thread's write units may share what they loaded (each unit
        still commits on its own): a change made in several steps reads each row once."""
        ...
