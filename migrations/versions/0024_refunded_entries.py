"""bank_notifications.refunded_at: refunded entries leave the sweeper's indexes

The sweeper's refunds read stranded and unmatched credits through partial indexes that
kept every such entry forever, refunded or not, so each round walked all of history.
An entry now records when its refund was instructed, and the indexes hold only entries
without one.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

NEW = {
    "ix_bank_notifications_refundable": "outcome IN ('PAYMENT_NOT_AWAITING', 'AMOUNT_MISMATCH') AND refunded_at IS NULL",
    "ix_bank_notifications_unmatched_unrefunded": "outcome IN ('UNMATCHED', 'AMBIGUOUS') AND refunded_at IS NULL",
}
OLD = {
    "ix_bank_notifications_stranded": "outcome IN ('PAYMENT_NOT_AWAITING', 'AMOUNT_MISMATCH')",
    "ix_bank_notifications_unmatched": "outcome IN ('UNMATCHED', 'AMBIGUOUS')",
}


def _swap(create: dict[str, str], drop: dict[str, str]) -> None:
    with op.get_context().autocommit_block():
        for name, where in create.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # a failed concurrent build's leftover
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON bank_notifications (received_at, id) WHERE {where}")
        for name in drop:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def upgrade() -> None:
    # A nullable column without a default: the table's lock is held for an instant; the
    # backfill runs after that commit, taking only the rows it changes.
    op.add_column("bank_notifications", sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True))
    with op.get_context().autocommit_block():
        op.execute(
            "UPDATE bank_notifications n SET refunded_at = r.created_at FROM refunds r"
            " WHERE r.entry_id = n.id AND n.refunded_at IS NULL"
        )
    _swap(NEW, OLD)


def downgrade() -> None:
    _swap(OLD, NEW)
    op.drop_column("bank_notifications", "refunded_at")
