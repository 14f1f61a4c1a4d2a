"""Keys remember their policy fingerprint (lifetime and metadata) beside the privileges one.

Revision ID: 5d1e7a0c4b21
Revises: cb9fe08316f9
Create Date: 2026-11-27 18:45:00+00:00

A change of privileges is applied to the key in place; a change of policy needs a new key at the
next window, so the two are tracked apart.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1e7a0c4b21"
down_revision: str | None = "cb9fe08316f9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("policy_fingerprint", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("policy_fingerprint")
