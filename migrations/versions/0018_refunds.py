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
        sa.CheckConstraint("status IN ('PAYOUT_INSTRUCTED', 'COMPLETED')", name=op.f("ck_refunds_status")),
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
    op.add_column("bank_notifications", sa.Column("refund_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_bank_notifications_refund_id_refunds"), "bank_notifications", "refunds", ["refund_id"], ["id"]
    )
    op.create_index(
        "uq_bank_notifications_matched_refund",
        "bank_notifications",
        ["refund_id"],
        unique=True,
        postgresql_where=sa.text("outcome = 'MATCHED'"),
    )


def downgrade() -> None:
    op.drop_index("uq_bank_notifications_matched_refund", table_name="bank_notifications")
    op.drop_constraint(op.f("fk_bank_notifications_refund_id_refunds"), "bank_notifications", type_="foreignkey")
    op.drop_column("bank_notifications", "refund_id")
    op.drop_index("ix_refunds_status", table_name="refunds")
    op.drop_table("refunds")
