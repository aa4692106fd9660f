"""bank_notifications: an index for the sweeper's unsignalled entries

Every sweeper round pages through the matched camt.054 entries whose signal never went
out (deltran/intake/camt054.signal_unsent), oldest first. Without an index that is a
scan of every entry ever received, every 30 s; the partial index holds only the few
entries waiting for their signal.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A concurrent build that failed (this revision not recorded) leaves an invalid
        # index behind: dropped first, so a rerun builds it whole.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_bank_notifications_unsignalled")
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_bank_notifications_unsignalled"
            " ON bank_notifications (received_at, id) WHERE outcome = 'MATCHED' AND signalled_at IS NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_bank_notifications_unsignalled")
