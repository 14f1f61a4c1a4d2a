"""The store's tables as typed SQLAlchemy models; the migrations in ``migrations/`` mirror them.

Every time is a timezone-aware UTC ``datetime`` in a column named ``*_at``, stored through
:class:`UTCDateTime`. No column has a server default: the application decides every value,
above all "now". Secrets are never stored: a key is known by its id, its name and the SHA-256
fingerprint of its secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rotator.states import KEY_TRANSITIONS, ROTATION_FINISHED, KeyState, RotationState

__all__ = [
    "KEY_TRANSITIONS",
    "ROTATION_FINISHED",
    "ApiKeyState",
    "RotationState",
]

# Constraint and index names are derived, never left to the database, so migrations are stable.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit sequence.
BigIntegerPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class NaiveDatetimeError(ValueError):
    """A datetime without a timezone was given where only aware UTC times are accepted."""


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A ``TIMESTAMP WITH TIME ZONE`` that always reads back as an aware UTC datetime.

    SQLite keeps no zone, so values are normalised to UTC before they are written and tagged as
    UTC when read. Naive values are refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Refuse naive values and convert aware ones to UTC."""
        if value is None:
            return None
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Return an aware UTC datetime whatever the database handed back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC.

    Raises:
        NaiveDatetimeError: ``value`` has no timezone.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(
            f"naive datetime {value.isoformat()} refused: the store takes timezone-aware UTC times"
        )
    return value.astimezone(UTC)


# The lifecycle's states belong to the domain; the store keeps them in its columns.
ApiKeyState = KeyState


def _state_enum(enum: type[StrEnum]) -> sa.Enum:
    """A VARCHAR(16) with a CHECK constraint named ``ck_<table>_state`` listing the values."""
    return sa.Enum(
        enum,
        name="state",
        native_enum=False,
        create_constraint=True,
        length=16,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    """Declarative base: the naming convention and the mapping of Python types to columns."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
    }


class Source(Base):
    """A source from the configuration: its desired state and its failure condition."""

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    # Read only by recovery (a source's stored overlap): the sweep's reads of every source skip it.
    spec_json: Mapped[dict[str, Any]] = mapped_column(deferred=True)
    spec_fingerprint: Mapped[str] = mapped_column(sa.String(64))
    generation: Mapped[int] = mapped_column(default=0)
    failure_count: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]


class Rotation(Base):
    """One replacement of a source's key; its id is the nonce put in the new key's metadata."""

    __tablename__ = "rotations"
    __table_args__ = (sa.Index("ix_rotations_source_name_state", "source_name", "state"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    source_name: Mapped[str] = mapped_column(sa.ForeignKey("sources.name"))
    reason: Mapped[str] = mapped_column(sa.String(32))
    state: Mapped[RotationState] = mapped_column(_state_enum(RotationState))
    new_key_es_id: Mapped[str | None] = mapped_column(sa.String(128))
    previous_key_es_id: Mapped[str | None] = mapped_column(sa.String(128))
    attempt_count: Mapped[int] = mapped_column(default=0)
    failure_count: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None]
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class ApiKey(Base):
    """A key rotator created (or adopted): ``planned_at`` is when the row was written,
    ``created_at`` when Elasticsearch created the key."""

    __tablename__ = "api_keys"
    __table_args__ = (sa.Index("ix_api_keys_source_name_state", "source_name", "state"),)

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    es_id: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    name: Mapped[str] = mapped_column(sa.String(1024))
    source_name: Mapped[str | None] = mapped_column(sa.ForeignKey("sources.name"))
    generation: Mapped[int] = mapped_column(default=0)
    state: Mapped[ApiKeyState] = mapped_column(_state_enum(ApiKeyState))
    rotation_id: Mapped[str | None] = mapped_column(sa.ForeignKey("rotations.id"))
    planned_at: Mapped[datetime]
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    renewal_at: Mapped[datetime | None] = mapped_column(index=True)
    jitter_seconds: Mapped[int] = mapped_column(default=0)
    delivered_at: Mapped[datetime | None]
    # Written before the first sink is called: from then on a consumer may hold the key.
    delivery_started_at: Mapped[datetime | None]
    # Each sink's receipt: {"name", "sink", "target", "state", "at"}; never a secret.
    deliveries_json: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON())
    activated_at: Mapped[datetime | None]
    retire_at: Mapped[datetime | None]
    invalidated_at: Mapped[datetime | None]
    secret_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    config_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    policy_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))


class TrackedKey(Base):
    """An API key of any owner as the inventory last saw it in Elasticsearch.

    ``key_class`` is ``rotator``, ``kibana-managed``, ``user`` or ``cross_cluster``;
    ``state`` is ``active``, ``expired``, ``invalidated`` or ``gone`` (no longer returned).
    ``warned_json`` holds the lead times (seconds) already warned about, ``findings_json`` the
    policy findings standing now. Metadata values that look like credentials are never kept.
    """

    __tablename__ = "tracked_keys"
    __table_args__ = (
        sa.Index("ix_tracked_keys_key_class_state", "key_class", "state"),
        sa.Index("ix_tracked_keys_state_sweep_id", "state", "sweep_id"),
    )

    es_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(1024))
    key_type: Mapped[str] = mapped_column(sa.String(16))
    key_class: Mapped[str] = mapped_column(sa.String(16))
    sub_kind: Mapped[str | None] = mapped_column(sa.String(32))
    owner: Mapped[str] = mapped_column(sa.String(1024))
    realm: Mapped[str] = mapped_column(sa.String(255))
    realm_type: Mapped[str | None] = mapped_column(sa.String(64))
    state: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    invalidated_at: Mapped[datetime | None]
    roles_json: Mapped[dict[str, Any]]
    metadata_json: Mapped[dict[str, Any]]
    findings_json: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON())
    warned_json: Mapped[list[int]] = mapped_column(sa.JSON())
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    gone_at: Mapped[datetime | None]
    sweep_id: Mapped[int] = mapped_column(sa.BigInteger)


class InventorySweep(Base):
    """One pass of the ``track`` job: what it could see (``scope``) and what it found."""

    __tablename__ = "inventory_sweeps"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.String(32))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    scope: Mapped[str] = mapped_column(sa.String(8))
    principal: Mapped[str] = mapped_column(sa.String(1024))
    seen: Mapped[int] = mapped_column(default=0)
    pages: Mapped[int] = mapped_column(default=0)
    ok: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(sa.Text)
    counts_json: Mapped[dict[str, Any]]


class AuditEvent(Base):
    """One entry of the append-only audit trail, chained to the previous one by its hash.

    ``prev_hash`` is unique too, so the chain cannot fork: two writers that computed their entry
    from the same predecessor cannot both commit.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.CheckConstraint("length(hash) = 64", name="hash_length"),
        {"sqlite_autoincrement": True},
    )

    seq: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(sa.String(255))
    action: Mapped[str] = mapped_column(sa.String(64))
    subject: Mapped[str] = mapped_column(sa.String(1024))
    outcome: Mapped[str] = mapped_column(sa.String(32))
    details_json: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class AuditCheckpoint(Base):
    """Where the kept trail starts after retention removed older events: the sequence and hash of
    the last event removed. Events covered by a checkpoint are the only ones a trigger lets be
    deleted; nothing may update or delete a checkpoint."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[datetime]
    removed: Mapped[int] = mapped_column(sa.BigInteger)
    reason: Mapped[str] = mapped_column(sa.String(255))


class AuditCursor(Base):
    """How far a copy of the trail has got (the high-water mark of shipping to Elasticsearch)."""

    __tablename__ = "audit_cursors"

    name: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[datetime]


class LeaseRecord(Base):
    """A named lease (the leader lease) with its holder and fencing epoch."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(255))
    epoch: Mapped[int] = mapped_column(sa.BigInteger)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    renewed_at: Mapped[datetime]


class PurgedKey(Base):
    """The tombstone of a key the purge job acted on: what became of it, when, by which run, why.

    ``outcome`` is ``invalidated``, ``previously_invalidated``, ``not_found`` (no longer valid
    when asked: invalidated or deleted meanwhile) or ``error`` (with ``error``, retried by the
    next run); ``reason`` is ``expired`` or ``retired`` (a key of rotator's own whose retirement
    failed). Kept for ``purge.retention`` after ``purged_at``, then deleted in batches.
    """

    __tablename__ = "purged_keys"

    es_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(1024))
    owner: Mapped[str] = mapped_column(sa.String(1024))
    realm: Mapped[str] = mapped_column(sa.String(255))
    expired_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(sa.String(32))
    error: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str] = mapped_column(sa.String(32))
    run_id: Mapped[str] = mapped_column(sa.String(32))
    purged_at: Mapped[datetime] = mapped_column(index=True)


class NoticeSent(Base):
    """What one notification sink was told about one condition (a notice's ``dedup_key``).

    ``sent_count`` counts the notices the sink took; ``failures`` is the failure streak the last
    notice reported (a smaller one later means the streak started over); ``resolved_at`` is set
    when the condition ended and cleared when it is sent again. Never a secret.
    """

    __tablename__ = "notices_sent"

    sink: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    severity: Mapped[str] = mapped_column(sa.String(16))
    subject: Mapped[str] = mapped_column(sa.String(1024))
    sent_count: Mapped[int]
    failures: Mapped[int | None]
    first_sent_at: Mapped[datetime]
    last_sent_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
