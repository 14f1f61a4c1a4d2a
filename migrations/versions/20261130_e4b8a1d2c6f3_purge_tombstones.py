"""Tombstones of purged keys: what the purge job did to each key, kept for the retention period.

Revision ID: e4b8a1d2c6f3
Revises: 9a4f1c2e7b55
Create Date: 2026-11-30 13:00:00+00:00

One row per key the ``purge`` job acted on (its id, name and owner, when it expired, the
outcome, the run, why), so that the evidence of an invalidation outlives the key document
Elasticsearch deletes a week later. Rows older than ``purge.retention`` are deleted in batches.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e4b8a1d2c6f3"
down_revision: str | None = "9a4f1c2e7b55"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purged_keys",
        sa.Column("es_id", sa.String(128), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("owner", sa.String(1024), nullable=False),
        sa.Column("realm", sa.String(255), nullable=False),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("es_id", name=op.f("pk_purged_keys")),
    )
    op.create_index(op.f("ix_purged_keys_purged_at"), "purged_keys", ["purged_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_purged_keys_purged_at"), table_name="purged_keys")
    op.drop_table("purged_keys")
