"""Keys remember when delivery started and what each sink reported.

Revision ID: 7b3c9e2d4f10
Revises: 5d1e7a0c4b21
Create Date: 2026-11-30 09:00:00+00:00

``delivery_started_at`` is written before the first sink is called: from then on a consumer may
hold the key, so recovery never invalidates it. ``deliveries_json`` lists each sink's receipt
(sink, target, the state it can be checked against later, when), never a secret.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b3c9e2d4f10"
down_revision: str | None = "5d1e7a0c4b21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("delivery_started_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("deliveries_json", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("deliveries_json")
        batch.drop_column("delivery_started_at")
