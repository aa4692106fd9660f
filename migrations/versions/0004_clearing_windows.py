"""clearing windows, funding instructions, net debit caps, routing and risk

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "net_debit_caps",
        sa.Column("participant_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("cap", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("cap >= 0", name=op.f("ck_net_debit_caps_cap_not_negative")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_net_debit_caps_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("participant_id", "currency", name=op.f("pk_net_debit_caps")),
    )
    op.create_table(
        "funding_instructions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("window_id", sa.UUID(), nullable=False),
        sa.Column("participant_id", sa.UUID(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=35), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="PENDING", nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=True),
        sa.Column("funded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('PENDING', 'FUNDED', 'EXPIRED')", name=op.f("ck_funding_instructions_status")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_funding_instructions_amount_positive")),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["bank_notifications.id"],
            name=op.f("fk_funding_instructions_notification_id_bank_notifications"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_funding_instructions_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["window_id"], ["clearing_windows.id"], name=op.f("fk_funding_instructions_window_id_clearing_windows")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funding_instructions")),
        sa.UniqueConstraint("reference", name=op.f("uq_funding_instructions_reference")),
        sa.UniqueConstraint("window_id", "participant_id", name="uq_funding_instructions_window_bank"),
    )
    op.add_column("bank_notifications", sa.Column("funding_instruction_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_bank_notifications_funding_instruction_id_funding_instructions"),
        "bank_notifications",
        "funding_instructions",
        ["funding_instruction_id"],
        ["id"],
        use_alter=True,
    )
    op.create_index(
        "uq_bank_notifications_matched_funding",
        "bank_notifications",
        ["funding_instruction_id"],
        unique=True,
        postgresql_where=sa.text("outcome = 'MATCHED'"),
    )
    op.add_column("clearing_windows", sa.Column("closed_by", sa.String(length=200), nullable=True))
    op.add_column("clearing_windows", sa.Column("obligations_count", sa.Integer(), nullable=True))
    op.add_column("clearing_windows", sa.Column("netting_efficiency", sa.Numeric(precision=9, scale=6), nullable=True))
    op.add_column("clearing_windows", sa.Column("liquidity_saved", sa.Numeric(precision=38, scale=5), nullable=True))
    op.add_column("clearing_windows", sa.Column("netting_ms", sa.Integer(), nullable=True))
    op.add_column("clearing_windows", sa.Column("funding_deadline", sa.DateTime(timezone=True), nullable=True))
    op.add_column("clearing_windows", sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("clearing_windows", sa.Column("settlement_reference", sa.String(length=35), nullable=True))
    op.add_column("clearing_windows", sa.Column("fallback_method", sa.String(length=16), nullable=True))
    op.create_unique_constraint(op.f("uq_clearing_windows_closed_by"), "clearing_windows", ["closed_by"])
    op.add_column("obligations", sa.Column("routing_reason", sa.Text(), nullable=True))
    op.add_column("obligations", sa.Column("rolled_from_window_id", sa.UUID(), nullable=True))
    op.add_column("obligations", sa.Column("fallback_reason", sa.Text(), nullable=True))
    op.create_foreign_key(
        op.f("fk_obligations_rolled_from_window_id_clearing_windows"),
        "obligations",
        "clearing_windows",
        ["rolled_from_window_id"],
        ["id"],
    )
    op.add_column("payments", sa.Column("urgent", sa.Boolean(), server_default="false", nullable=False))
    op.add_column("payments", sa.Column("risk_score", sa.Numeric(precision=5, scale=2), nullable=True))
    op.add_column("payments", sa.Column("risk_factors", postgresql.JSONB(astext_type=sa.Text()), nullable=True))


def downgrade() -> None:
    op.drop_column("payments", "risk_factors")
    op.drop_column("payments", "risk_score")
    op.drop_column("payments", "urgent")
    op.drop_constraint(op.f("fk_obligations_rolled_from_window_id_clearing_windows"), "obligations", type_="foreignkey")
    op.drop_column("obligations", "fallback_reason")
    op.drop_column("obligations", "rolled_from_window_id")
    op.drop_column("obligations", "routing_reason")
    op.drop_constraint(op.f("uq_clearing_windows_closed_by"), "clearing_windows", type_="unique")
    op.drop_column("clearing_windows", "fallback_method")
    op.drop_column("clearing_windows", "settlement_reference")
    op.drop_column("clearing_windows", "settled_at")
    op.drop_column("clearing_windows", "funding_deadline")
    op.drop_column("clearing_windows", "netting_ms")
    op.drop_column("clearing_windows", "liquidity_saved")
    op.drop_column("clearing_windows", "netting_efficiency")
    op.drop_column("clearing_windows", "obligations_count")
    op.drop_column("clearing_windows", "closed_by")
    op.drop_index(
        "uq_bank_notifications_matched_funding",
        table_name="bank_notifications",
        postgresql_where=sa.text("outcome = 'MATCHED'"),
    )
    op.drop_constraint(
        op.f("fk_bank_notifications_funding_instruction_id_funding_instructions"),
        "bank_notifications",
        type_="foreignkey",
    )
    op.drop_column("bank_notifications", "funding_instruction_id")
    op.drop_table("funding_instructions")
    op.drop_table("net_debit_caps")
