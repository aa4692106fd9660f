"""events: fewer index entries where they are written

An event is written inside the hottest transactions (intake, the mint batch): it now
enters only its primary key and the unnumbered index there, and the feed and delivery
indexes when it is numbered (a write half as heavy; make bench-mint measured the cost).

- `written` needs no unique index of its own (an identity; the numberer reads it through
  ix_events_unnumbered);
- `delivery_status` is set when numbered (NULL before), so a new event is not in
  ix_events_undelivered;
- ix_events_feed holds numbered events only.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("uq_events_written", "events", type_="unique")
    op.alter_column("events", "delivery_status", nullable=True, server_default=None)
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_events_feed")
        op.execute("CREATE INDEX CONCURRENTLY ix_events_feed ON events (participant_id, seq) WHERE seq IS NOT NULL")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_events_feed")
        op.execute("CREATE INDEX CONCURRENTLY ix_events_feed ON events (participant_id, seq)")
    op.execute("UPDATE events SET delivery_status = 'PENDING' WHERE delivery_status IS NULL")
    op.alter_column("events", "delivery_status", nullable=False, server_default="PENDING")
    op.create_unique_constraint("uq_events_written", "events", ["written"])
