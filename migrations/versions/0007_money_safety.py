"""a bank cannot pay itself; every roll of an obligation kept; camt.054 statuses of 35 characters

- payments.debtor_agent_bic <> creditor_agent_bic and obligations.payer_id <> payee_id:
  a self-paying payment stalled its window (its transfer debits and credits one account).
  NOT VALID: enforced for every new row; rows from before are left to be looked at.
- obligation_rolls: rolled_from_window_id kept only the latest roll; each roll is a row.
- bank_notifications.entry_status: Sts/Prtry is Max35Text; 8 characters made a valid
  camt.054 unbookable.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE payments ADD CONSTRAINT ck_payments_distinct_agents"
        " CHECK (debtor_agent_bic <> creditor_agent_bic) NOT VALID"
    )
    op.execute(
        "ALTER TABLE obligations ADD CONSTRAINT ck_obligations_distinct_parties CHECK (payer_id <> payee_id) NOT VALID"
    )
    op.alter_column(
        "bank_notifications",
        "entry_status",
        type_=sa.String(length=35),
        existing_type=sa.String(length=8),
        existing_nullable=False,
    )
    op.create_table(
        "obligation_rolls",
        sa.Column("obligation_id", sa.UUID(), nullable=False),
        sa.Column("from_window_id", sa.UUID(), nullable=False),
        sa.Column("to_window_id", sa.UUID(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rolled_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["obligation_id"], ["obligations.id"], name=op.f("fk_obligation_rolls_obligation_id_obligations")
        ),
        sa.ForeignKeyConstraint(
            ["from_window_id"],
            ["clearing_windows.id"],
            name=op.f("fk_obligation_rolls_from_window_id_clearing_windows"),
        ),
        sa.ForeignKeyConstraint(
            ["to_window_id"], ["clearing_windows.id"], name=op.f("fk_obligation_rolls_to_window_id_clearing_windows")
        ),
        sa.PrimaryKeyConstraint("obligation_id", "from_window_id", name=op.f("pk_obligation_rolls")),
    )
    op.create_index("ix_obligation_rolls_from_window", "obligation_rolls", ["from_window_id"], unique=False)
    # The rolls recorded before this table: the latest of each obligation is known.
    op.execute(
        "INSERT INTO obligation_rolls (obligation_id, from_window_id, to_window_id, reason)"
        " SELECT id, rolled_from_window_id, clearing_window_id, coalesce(fallback_reason, 'rolled by its window''s fallback')"
        " FROM obligations WHERE rolled_from_window_id IS NOT NULL AND clearing_window_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_obligation_rolls_from_window", table_name="obligation_rolls")
    op.drop_table("obligation_rolls")
    op.alter_column(
        "bank_notifications",
        "entry_status",
        type_=sa.String(length=8),
        existing_type=sa.String(length=35),
        existing_nullable=False,
    )
    op.execute("ALTER TABLE obligations DROP CONSTRAINT ck_obligations_distinct_parties")
    op.execute("ALTER TABLE payments DROP CONSTRAINT ck_payments_distinct_agents")
