"""indexes for account statements

GET /v1/accounts/{currency}/statement reads one account's postings of a period: without
these it scans the whole ledger. Built CONCURRENTLY: a live system keeps posting while
they build.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_ledger_transfers_debit_account": "(debit_account_id, created_at)",
    "ix_ledger_transfers_credit_account": "(credit_account_id, created_at)",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, columns in INDEXES.items():
            # A concurrent build that failed (this revision not recorded) leaves an invalid
            # index behind: build it anew.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON ledger_transfers {columns}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
