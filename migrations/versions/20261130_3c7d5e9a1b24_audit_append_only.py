"""The audit trail is append-only in the database itself; retention goes through a checkpoint.

Revision ID: 3c7d5e9a1b24
Revises: e4b8a1d2c6f3
Create Date: 2026-11-30 14:00:00+00:00

Triggers refuse every UPDATE of ``audit_events`` and every DELETE of an event no checkpoint
covers, on SQLite and on PostgreSQL. ``audit_checkpoints`` records where the kept trail starts
after retention (the last removed event's sequence and hash), so the rest still verifies; its rows
can be neither updated nor deleted. ``audit_cursors`` holds how far each copy of the trail got.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c7d5e9a1b24"
down_revision: str | None = "e4b8a1d2c6f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "audit events are append-only"
CHECKPOINTS_FIXED = "audit checkpoints cannot be changed"

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
    f"""CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    WHEN NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE audit_checkpoints.seq >= OLD.seq)
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: only events a checkpoint covers may be removed');
    END""",
    f"""CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, '{CHECKPOINTS_FIXED}'); END""",
    f"""CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, '{CHECKPOINTS_FIXED}'); END""",
)

POSTGRESQL_TRIGGERS = (
    f"""CREATE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION '{APPEND_ONLY}';
      END IF;
      IF NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE audit_checkpoints.seq >= OLD.seq) THEN
        RAISE EXCEPTION '{APPEND_ONLY}: only events a checkpoint covers may be removed';
      END IF;
      RETURN OLD;
    END $$""",
    """CREATE TRIGGER audit_events_guard BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_guard()""",
    f"""CREATE FUNCTION audit_checkpoints_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '{CHECKPOINTS_FIXED}'; END $$""",
    """CREATE TRIGGER audit_checkpoints_guard BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_guard()""",
    # TRUNCATE skips row triggers: refuse it too.
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_guard()""",
)


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_cursors",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_audit_cursors")),
    )
    dialect = op.get_bind().dialect.name
    for statement in POSTGRESQL_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER audit_events_guard ON audit_events")
        op.execute("DROP TRIGGER audit_checkpoints_guard ON audit_checkpoints")
        op.execute("DROP FUNCTION audit_events_guard()")
        op.execute("DROP FUNCTION audit_checkpoints_guard()")
    else:
        for name in (
            "audit_events_no_update",
            "audit_events_no_delete",
            "audit_checkpoints_no_update",
            "audit_checkpoints_no_delete",
        ):
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table("audit_cursors")
    op.drop_table("audit_checkpoints")
