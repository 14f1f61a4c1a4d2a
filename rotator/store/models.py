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
    spec_json: Mapped[dict[str, Any]]
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


class ManagedKey(Base):
    """A key another service (Kibana, Fleet, ...) created, as last seen in Elasticsearch."""

    __tablename__ = "managed_keys"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    es_id: Mapped[str] = mapped_column(sa.String(128), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(1024))
    owner: Mapped[str] = mapped_column(sa.String(1024))
    realm: Mapped[str] = mapped_column(sa.String(255))
    kind: Mapped[str | None] = mapped_column(sa.String(64))
    metadata_json: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    invalidated: Mapped[bool] = mapped_column(default=False)
    invalidated_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    vanished_at: Mapped[datetime | None]
    last_warned_at: Mapped[datetime | None]


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


class LeaseRecord(Base):
    """A named lease (the leader lease) with its holder and fencing epoch."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(255))
    epoch: Mapped[int] = mapped_column(sa.BigInteger)
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
