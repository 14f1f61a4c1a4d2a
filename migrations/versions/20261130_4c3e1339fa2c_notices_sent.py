"""What each notification sink was told: one row per sink and condition, for deduplication.

Revision ID: 4c3e1339fa2c
Revises: 3c7d5e9a1b24
Create Date: 2026-11-30 15:00:00+00:00

A notice names its condition with a ``dedup_key``. The first time a sink takes a notice of a
condition a row is written; later notices of the same condition are held back until the
condition was resolved (``resolved_at``), a failure streak started over (``failures``), or
``notify.renotify_after`` passed since ``last_sent_at``. Rows hold no secret: kinds, severities,
subjects (source names, ``key:<id>``) and times.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4c3e1339fa2c"
down_revision: str | None = "3c7d5e9a1b24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notices_sent",
        sa.Column("sink", sa.String(255), nullable=False),
        sa.Column("dedup_key", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("sent_count", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=True),
        sa.Column("first_sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("sink", "dedup_key", name=op.f("pk_notices_sent")),
    )


def downgrade() -> None:
    op.drop_table("notices_sent")
