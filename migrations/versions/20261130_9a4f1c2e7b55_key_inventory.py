"""The key inventory: every API key the track job sees, and each sweep's scope.

Revision ID: 9a4f1c2e7b55
Revises: 7b3c9e2d4f10
Create Date: 2026-11-30 12:00:00+00:00

``managed_keys`` held only keys of other services and was never written; ``tracked_keys`` holds
every key the ``track`` job can see, whatever its class, with its standing policy findings and
the expiry lead times already warned about. ``inventory_sweeps`` records what each sweep could
see (``all`` keys or only its ``own``) so that "no keys" is never said of keys it cannot see.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a4f1c2e7b55"
down_revision: str | None = "7b3c9e2d4f10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.drop_index(op.f("ix_managed_keys_expires_at"), table_name="managed_keys")
    op.drop_table("managed_keys")
    op.create_table(
        "tracked_keys",
        sa.Column("es_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("key_class", sa.String(16), nullable=False),
        sa.Column("sub_kind", sa.String(32), nullable=True),
        sa.Column("owner", sa.String(1024), nullable=False),
        sa.Column("realm", sa.String(255), nullable=False),
        sa.Column("realm_type", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        _at("created_at"),
        _at("expires_at", nullable=True),
        _at("invalidated_at", nullable=True),
        sa.Column("roles_json", sa.JSON(), nullable=False),
        sa.Column("metadata_json", sa.JSON(), nullable=False),
        sa.Column("findings_json", sa.JSON(), nullable=False),
        sa.Column("warned_json", sa.JSON(), nullable=False),
        _at("first_seen_at"),
        _at("last_seen_at"),
        _at("gone_at", nullable=True),
        sa.Column("sweep_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("es_id", name=op.f("pk_tracked_keys")),
    )
    op.create_index(op.f("ix_tracked_keys_expires_at"), "tracked_keys", ["expires_at"])
    op.create_index(op.f("ix_tracked_keys_key_class_state"), "tracked_keys", ["key_class", "state"])
    op.create_index(op.f("ix_tracked_keys_state_sweep_id"), "tracked_keys", ["state", "sweep_id"])
    op.create_table(
        "inventory_sweeps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(32), nullable=False),
        _at("started_at"),
        _at("finished_at", nullable=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("principal", sa.String(1024), nullable=False),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("counts_json", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_sweeps")),
    )


def downgrade() -> None:
    op.drop_table("inventory_sweeps")
    op.drop_index(op.f("ix_tracked_keys_state_sweep_id"), table_name="tracked_keys")
    op.drop_index(op.f("ix_tracked_keys_key_class_state"), table_name="tracked_keys")
    op.drop_index(op.f("ix_tracked_keys_expires_at"), table_name="tracked_keys")
    op.drop_table("tracked_keys")
    op.create_table(
        "managed_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
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
