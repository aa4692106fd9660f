"""payments: indexes for status requests by original MsgId and TxId

A bank's pacs.028 may name its payments by the pacs.008 MsgId or TxId it sent
(deltran/status_requests.py); without these, each such request would scan every payment.
Partial: JSON submissions have neither.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_payments_message_id": "(message_id) WHERE message_id IS NOT NULL",
    "ix_payments_transaction_id": "(transaction_id) WHERE transaction_id IS NOT NULL",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, definition in INDEXES.items():
            # A concurrent build that failed (this revision not recorded) leaves an invalid
            # index behind: dropped first, so a rerun builds it whole.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON payments {definition}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
