"""bank_notifications: the debtor agent a camt.054 entry names (TxDtls/RltdAgts/DbtrAgt)

Who gets back a booked credit that matched nothing (deltran/refunds.py).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


# What the sweeper's refunds of unmatched credits look for, whatever the table's size.
INDEX = "ix_bank_notifications_unmatched"


def upgrade() -> None:
    op.add_column("bank_notifications", sa.Column("debtor_agent_bic", sa.String(length=11), nullable=True))
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")  # a failed concurrent build's leftover
        op.execute(
            f"CREATE INDEX CONCURRENTLY {INDEX} ON bank_notifications (received_at, id)"
            " WHERE outcome IN ('UNMATCHED', 'AMBIGUOUS')"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    op.drop_column("bank_notifications", "debtor_agent_bic")
