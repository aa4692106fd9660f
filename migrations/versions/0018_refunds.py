"""refunds: booked fiat that can no longer settle anything, paid back to its bank

- refunds: one per stranded camt.054 CRDT entry, its payout reference unique.
- bank_notifications: the refund a booked DBIT entry paid out (at most one each).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("entry_id", sa.UUID(), nullable=False),
        sa.Column("participant_id", sa.UUID(), nullable=False),
        sa.Column("reference", sa.String(length=35), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.CheckConstraint("status IN ('PAYOUT_INSTRUCTED', 'COMPLETED', 'BY_HAND')", name=op.f("ck_refunds_status")),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["bank_notifications.id"], name=op.f("fk_refunds_entry_id_bank_notifications")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_refunds_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"], ["bank_notifications.id"], name=op.f("fk_refunds_notification_id_bank_notifications")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_refunds_entry_id")),
        sa.UniqueConstraint("reference", name=op.f("uq_refunds_reference")),
    )
    op.create_index("ix_refunds_status", "refunds", ["status", "created_at"], unique=False)
    # Entries stranded before refunds existed were returned by hand (the runbook said so):
    # recorded as such, so the sweeper never pays them a second time.
    op.execute(
        """
        INSERT INTO refunds (id, entry_id, participant_id, reference, currency, amount, status, reason)
        SELECT s.id, s.entry_id, s.participant_id, 'RFD-' || upper(left(replace(s.id::text, '-', ''), 28)),
               s.currency, s.amount, 'BY_HAND', 'stranded before refunds existed: returned by hand'
        FROM (
            SELECT gen_random_uuid() AS id, n.id AS entry_id, bank.id AS participant_id, n.currency, n.amount
            FROM bank_notifications n
            JOIN payments p ON p.id = n.payment_id
            JOIN participants bank ON bank.bic = p.debtor_agent_bic
            WHERE n.outcome = 'PAYMENT_NOT_AWAITING' AND n.credit_debit = 'CRDT' AND n.entry_status = 'BOOK'
              AND NOT n.reversal AND n.amount > 0
        ) AS s
        """
    )
    # A column without a default, and its constraint checked later: no long lock on the
    # table the camt.054 intake writes to; the indexes built concurrently.
    op.add_column("bank_notifications", sa.Column("refund_id", sa.UUID(), nullable=True))
    op.execute(
        "ALTER TABLE bank_notifications ADD CONSTRAINT fk_bank_notifications_refund_id_refunds"
        " FOREIGN KEY (refund_id) REFERENCES refunds (id) NOT VALID"
    )
    op.execute("ALTER TABLE bank_notifications VALIDATE CONSTRAINT fk_bank_notifications_refund_id_refunds")
    with op.get_context().autocommit_block():
        for name, definition in INDEXES.items():
            # A concurrent build that failed leaves an invalid index: dropped first.
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE {definition}")


INDEXES = {
    # At most one entry books a refund's payout.
    "uq_bank_notifications_matched_refund": "UNIQUE INDEX CONCURRENTLY uq_bank_notifications_matched_refund"
    " ON bank_notifications (refund_id) WHERE outcome = 'MATCHED'",
    # What the sweeper's refunds look for, whatever the table's size.
    "ix_bank_notifications_not_awaiting": "INDEX CONCURRENTLY ix_bank_notifications_not_awaiting"
    " ON bank_notifications (received_at, id) WHERE outcome = 'PAYMENT_NOT_AWAITING'",
}


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.drop_constraint("fk_bank_notifications_refund_id_refunds", "bank_notifications", type_="foreignkey")
    op.drop_column("bank_notifications", "refund_id")
    op.drop_index("ix_refunds_status", table_name="refunds")
    op.drop_table("refunds")
