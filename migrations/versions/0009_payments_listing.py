"""indexes for listing payments newest first

GET /v1/payments pages a bank's sent and received payments, and every payment for admin,
newest first by (created_at, id): one index per way of reading, so a page is an ordered
index scan however many payments there are. Built CONCURRENTLY: a live system keeps
taking payments while they build.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_payments_debtor_listing": "(debtor_agent_bic, created_at, id)",
    "ix_payments_creditor_listing": "(creditor_agent_bic, created_at, id)",
    "ix_payments_listing": "(created_at, id)",
}


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for name, columns in INDEXES.items():
            # A concurrent build that failed (this revision not recorded) leaves an invalid
            # index behind: build it anew.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON payments {columns}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
