"""The domain's vocabulary: source specs, what is known about keys, and the actions planned."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rotator.gcpause import collector_paused
from rotator.scoping import Grants, VerificationSet, fingerprint, role_descriptors, verification_set
from rotator.states import KeyState

if TYPE_CHECKING:  # the domain needs the config's types, not its parser, at run time
    from rotator.config import Config, ExecSink, FileSink, SourceConfig, WebhookSink

    SinkConfig = FileSink | ExecSink | WebhookSink

__all__ = ["MANAGED_BY", "KeyState"]

# The value of ``metadata.managed_by`` on every key rotator creates.
MANAGED_BY = "rotator"


class EsStatus(StrEnum):
    """What Elasticsearch says about a key rotator tracks."""

    VALID = "valid"
    INVALIDATED = "invalidated"
    EXPIRED = "expired"
    MISSING = "missing"
    UNKNOWN = "unknown"


class ActionKind(StrEnum):
    """What the executor is asked to do."""

    PROVISION = "provision"
    ROTATE = "rotate"
    UPDATE = "update"
    RETIRE = "retire"
    RETIRE_SOURCE = "retire-source"
    RESUME = "resume"
    INVALIDATE_ORPHAN = "invalidate-orphan"
    HOLD = "hold"
    ALERT = "alert"
    HEALTH = "health"


class Reason(StrEnum):
    """Why an action is planned: a closed vocabulary that the plan, logs and audit share."""

    NO_KEY = "no-key"
    EXPIRING = "expiring"
    SPEC_CHANGED = "spec-changed"
    POLICY_CHANGED = "policy-changed"
    DRIFTED = "drifted"
    FORCED = "forced"
    OVERLAP_ELAPSED = "overlap-elapsed"
    SOURCE_REMOVED = "source-removed"
    INTERRUPTED = "interrupted"
    ORPHANED = "orphaned"
    BACKOFF = "backoff"
    EXPIRING_WHILE_FAILING = "expiring-while-failing"
    PARTIALLY_DELIVERED = "partially-delivered"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class SourceSpec:
    """The desired state of one source, with its policy resolved."""

    name: str
    grants: Grants
    metadata: tuple[tuple[str, Any], ...]
    lifetime: timedelta
    rotate_before: timedelta
    overlap: timedelta
    jitter: timedelta
    critical_before: timedelta
    sinks: tuple[SinkConfig, ...] = ()
    justification: str | None = None

    @property
    def role_descriptors(self) -> dict[str, Any]:
        """The key's role descriptors."""
        return role_descriptors(self.name, self.grants)

    @property
    def verification(self) -> VerificationSet:
        """What the new key must and must not be able to do."""
        return verification_set(self.name, self.grants)

    @cached_property
    def privileges_fingerprint(self) -> str:
        """Changes when the key's privileges must change (updated in place); computed once."""
        return fingerprint(self.role_descriptors)

    @cached_property
    def policy_fingerprint(self) -> str:
        """Changes when a new key is needed at the next window (lifetime, metadata)."""
        return fingerprint(
            {"lifetime": self.lifetime.total_seconds(), "metadata": dict(self.metadata)}
        )

    @cached_property
    def stored_fingerprint(self) -> str:
        """The fingerprint of :meth:`snapshot` as the store records it; computed once per spec
        (a run stores the specs, then plans with them)."""
        return spec_fingerprint(self.snapshot())

    @property
    def key_metadata(self) -> dict[str, Any]:
        """The user metadata every key of this source carries (rotator adds its own fields)."""
        return dict(self.metadata)

    @classmethod
    def from_config(cls, config: Config, source: SourceConfig) -> SourceSpec:
        """Resolve a configured source against the defaults."""
        policy = config.policy_for(source)
        return cls(
            name=source.name,
            grants=source.grants(),
            metadata=tuple(sorted(source.metadata.items())),
            lifetime=policy.lifetime,
            rotate_before=policy.rotate_before,
            overlap=policy.overlap,
            jitter=policy.jitter,
            critical_before=policy.critical_before,
            sinks=tuple(source.deliver),
            justification=source.justification,
        )

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready record of the desired state, kept in the store (no secrets)."""
        return {
            "role_descriptors": self.role_descriptors,
            "metadata": dict(self.metadata),
            "lifetime_s": self.lifetime.total_seconds(),
            "rotate_before_s": self.rotate_before.total_seconds(),
            "overlap_s": self.overlap.total_seconds(),
            "jitter_s": self.jitter.total_seconds(),
            "sinks": [sink.model_dump(mode="json") for sink in self.sinks],
            "justification": self.justification,
        }


def canonical_json(spec: Mapping[str, Any]) -> str:
    """A spec snapshot as the store keeps it: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_fingerprint(spec: Mapping[str, Any]) -> str:
    """Return the SHA-256 hex digest of ``spec`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def iso(value: datetime | None) -> str | None:
    """A time as every output shows it: UTC, whole seconds, with a ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def specs_from_config(config: Config) -> list[SourceSpec]:
    """Every configured source as a spec, plus rotator's own implicit sources."""
    with collector_paused():
        specs = [SourceSpec.from_config(config, source) for source in config.sources]
    # The audit trail's shipping key (audit.data_stream set): source ``rotator-audit``,
    # provisioned and rotated like any other; a configured source of that name takes its place.
    from rotator.audit_ship import shipping_spec

    shipping = shipping_spec(config)
    if shipping is not None and all(s.name != shipping.name for s in specs):
        specs.append(shipping)
    return specs


@dataclass(frozen=True)
class KeyView:
    """A key rotator tracks, as the store and Elasticsearch know it."""

    es_id: str
    source: str
    generation: int
    state: KeyState
    created_at: datetime
    expires_at: datetime
    renewal_at: datetime
    privileges_fingerprint: str
    policy_fingerprint: str
    delivered_at: datetime | None = None
    retire_at: datetime | None = None
    es_status: EsStatus = EsStatus.UNKNOWN
    # What a sink found changed in what it was given (mode, owner, content), if anything.
    delivery_problem: str | None = None

    @property
    def awaiting_successor(self) -> bool:
        """A key only some sinks may hold: it serves them until a newer key reaches every sink."""
        return self.state is KeyState.RETIRING and self.retire_at is None


@dataclass(frozen=True)
class SourceView:
    """What the store knows about a source (present in the config or not).

    A source whose spec changed since its last failure is seen with no failures: the change is a
    new attempt, and ``plan`` and ``once`` must decide alike.
    """

    name: str
    failure_count: int = 0
    next_attempt_at: datetime | None = None
    overlap: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Inventory:
    """Everything the planner needs to know, gathered before planning."""

    sources: tuple[SourceView, ...] = ()
    keys: tuple[KeyView, ...] = ()
    unfinished_rotations: tuple[tuple[str, str], ...] = ()  # (source, rotation id)
    orphans: tuple[str, ...] = ()  # valid rotator keys that the store does not know
    forced: frozenset[str] = field(default_factory=frozenset)

    def source(self, name: str) -> SourceView:
        """The stored view of a source (an empty one when never seen)."""
        return self._sources.get(name) or SourceView(name)

    def keys_of(self, name: str) -> list[KeyView]:
        """The source's keys, newest generation first."""
        return list(self._keys.get(name, ()))

    def interrupted(self, name: str) -> list[str]:
        """The ids of the source's unfinished rotations."""
        return list(self._rotations.get(name, ()))

    # Indexed once per inventory, so planning is linear in the number of sources and keys.

    @cached_property
    def _sources(self) -> dict[str, SourceView]:
        out: dict[str, SourceView] = {}
        for view in self.sources:
            out.setdefault(view.name, view)
        return out

    @cached_property
    def _keys(self) -> dict[str, list[KeyView]]:
        out: dict[str, list[KeyView]] = {}
        for key in self.keys:
            out.setdefault(key.source, []).append(key)
        for keys in out.values():
            keys.sort(key=lambda k: -k.generation)
        return out

    @cached_property
    def _rotations(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for source, rotation_id in self.unfinished_rotations:
            out.setdefault(source, []).append(rotation_id)
        return out


@dataclass(frozen=True)
class Action:
    """One planned step, with the reason and the moment it became due."""

    kind: ActionKind
    source: str
    reason: Reason
    due_at: datetime
    key_id: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The action as shown by ``rotator plan --output json``."""
        return {
            "action": self.kind.value,
            "source": self.source,
            "reason": self.reason.value,
            "key_id": self.key_id,
            "due_at": iso(self.due_at),
            "detail": self.detail,
        }
