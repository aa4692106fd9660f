"""an index for the risk engine's velocity count

The count of a debtor account's recent payments at its bank read the whole payments
table for every obligation (make bench-engines: two sequential scans per payment, so the
risk engine slowed as the table grew). Built CONCURRENTLY: a live system keeps taking
payments while it builds.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # A concurrent build that failed (this revision not recorded) leaves an invalid
        # index behind: build it anew.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_payments_debtor_recent")
        op.execute(
            "CREATE INDEX CONCURRENTLY ix_payments_debtor_recent"
            " ON payments (debtor_agent_bic, coalesce(debtor_iban, debtor_account), created_at)"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_payments_debtor_recent")
