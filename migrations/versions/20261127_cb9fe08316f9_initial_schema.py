"""Initial schema: sources, rotations, api_keys, managed_keys, audit_events, leases.

Revision ID: cb9fe08316f9
Revises:
Create Date: 2026-11-27 18:20:00+00:00

Hand-checked against rotator.store.models; tests compare the two on SQLite and PostgreSQL.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "cb9fe08316f9"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_STATES = (
    "planned",
    "creating",
    "created",
    "verified",
    "delivered",
    "active",
    "retiring",
    "invalidated",
    "failed",
)
ROTATION_STATES = (
    "planned",
    "creating",
    "created",
    "verified",
    "delivered",
    "active",
    "completed",
    "failed",
    "compensated",
)


def _at(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    """A timestamp column: always with time zone, never with a server default."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _big_id(name: str) -> sa.Column[Any]:
    """A 64-bit surrogate key (INTEGER on SQLite, which only auto-increments that type)."""
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    return sa.Column(name, big, autoincrement=True, nullable=False)


def _state_check(table: str, states: Sequence[str]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{state}'" for state in states)
    return sa.CheckConstraint(f"state IN ({listed})", name=op.f(f"ck_{table}_state"))


def upgrade() -> None:
    """Create every table of the first version of the store."""
    _create_sources()
    _create_rotations()
    _create_api_keys()
    _create_managed_keys()
    _create_audit_events()
    _create_leases()


def downgrade() -> None:
    """Drop everything the upgrade created, children before parents."""
    op.drop_table("leases")
    op.drop_index(op.f("ix_audit_events_at"), table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_index(op.f("ix_managed_keys_expires_at"), table_name="managed_keys")
    op.drop_table("managed_keys")
    op.drop_index(op.f("ix_api_keys_renewal_at"), table_name="api_keys")
    op.drop_index(op.f("ix_api_keys_expires_at"), table_name="api_keys")
    op.drop_index(op.f("ix_api_keys_source_name_state"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_index(op.f("ix_rotations_source_name_state"), table_name="rotations")
    op.drop_table("rotations")
    op.drop_table("sources")


def _create_sources() -> None:
    op.create_table(
        "sources",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("spec_json", sa.JSON(), nullable=False),
        sa.Column("spec_fingerprint", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _at("next_attempt_at", nullable=True),
        _at("created_at"),
        _at("updated_at"),
        _at("retired_at", nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sources")),
    )


def _create_rotations() -> None:
    op.create_table(
        "rotations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("source_name", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("new_key_es_id", sa.String(128), nullable=True),
        sa.Column("previous_key_es_id", sa.String(128), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _at("next_attempt_at", nullable=True),
        _at("started_at"),
        _at("updated_at"),
        _at("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rotations")),
        sa.ForeignKeyConstraint(
            ["source_name"], ["sources.name"], name=op.f("fk_rotations_source_name_sources")
        ),
        _state_check("rotations", ROTATION_STATES),
    )
    op.create_index(op.f("ix_rotations_source_name_state"), "rotations", ["source_name", "state"])


def _create_api_keys() -> None:
    op.create_table(
        "api_keys",
        _big_id("id"),
        sa.Column("es_id", sa.String(128), nullable=True),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("source_name", sa.String(128), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rotation_id", sa.String(36), nullable=True),
        _at("planned_at"),
        _at("created_at", nullable=True),
        _at("updated_at"),
        _at("expires_at", nullable=True),
        _at("renewal_at", nullable=True),
        sa.Column("jitter_seconds", sa.Integer(), nullable=False),
        _at("delivered_at", nullable=True),
        _at("activated_at", nullable=True),
        _at("retire_at", nullable=True),
        _at("invalidated_at", nullable=True),
        sa.Column("secret_fingerprint", sa.String(64), nullable=True),
        sa.Column("config_fingerprint", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("es_id", name=op.f("uq_api_keys_es_id")),
        sa.ForeignKeyConstraint(
            ["source_name"], ["sources.name"], name=op.f("fk_api_keys_source_name_sources")
        ),
        sa.ForeignKeyConstraint(
            ["rotation_id"], ["rotations.id"], name=op.f("fk_api_keys_rotation_id_rotations")
        ),
        _state_check("api_keys", KEY_STATES),
    )
    op.create_index(op.f("ix_api_keys_source_name_state"), "api_keys", ["source_name", "state"])
    op.create_index(op.f("ix_api_keys_expires_at"), "api_keys", ["expires_at"])
    op.create_index(op.f("ix_api_keys_renewal_at"), "api_keys", ["renewal_at"])


def _create_managed_keys() -> None:
    op.create_table(
        "managed_keys",
        _big_id("id"),
        sa.Column("es_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(1024), nullable=True),
        sa.Column("owner", sa.String(1024), nullable=False),
        sa.Column("realm", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(64), nullable=True),
        sa.Column("metadata_json", sa.JSON(), nullable=False),
        _at("created_at"),
        _at("expires_at", nullable=True),
        sa.Column("invalidated", sa.Boolean(), nullable=False),
        _at("invalidated_at", nullable=True),
        _at("first_seen_at"),
        _at("last_seen_at"),
        _at("vanished_at", nullable=True),
        _at("last_warned_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_managed_keys")),
        sa.UniqueConstraint("es_id", name=op.f("uq_managed_keys_es_id")),
    )
    op.create_index(op.f("ix_managed_keys_expires_at"), "managed_keys", ["expires_at"])


def _create_audit_events() -> None:
    op.create_table(
        "audit_events",
        _big_id("seq"),
        _at("at"),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("details_json", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_audit_events_prev_hash")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_events_hash")),
        sa.CheckConstraint("length(hash) = 64", name=op.f("ck_audit_events_hash_length")),
        # Never reuse a sequence number, even after the newest row was removed.
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])


def _create_leases() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        _at("acquired_at"),
        _at("expires_at"),
        _at("renewed_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
