"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "camt054_messages",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.String(length=35), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_camt054_messages")),
    )
    op.create_table(
        "clearing_windows",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), server_default="OPEN", nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("gross_amount", sa.Numeric(precision=38, scale=5), nullable=True),
        sa.Column("net_amount", sa.Numeric(precision=38, scale=5), nullable=True),
        sa.CheckConstraint(
            "status IN ('OPEN', 'CLOSING', 'AWAITING_FUNDING', 'SETTLED', 'PARTIALLY_SETTLED')",
            name=op.f("ck_clearing_windows_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clearing_windows")),
    )
    op.create_index(
        "uq_clearing_windows_open_currency",
        "clearing_windows",
        ["currency"],
        unique=True,
        postgresql_where=sa.text("status = 'OPEN'"),
    )
    op.create_table(
        "operator_keys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('settlement_agent', 'admin')", name=op.f("ck_operator_keys_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_operator_keys_key_hash")),
    )
    op.create_table(
        "participants",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("bic", sa.String(length=11), nullable=False),
        sa.Column("name", sa.String(length=140), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="ACTIVE", nullable=False),
        sa.Column("api_key_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('ACTIVE', 'SUSPENDED')", name=op.f("ck_participants_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participants")),
        sa.UniqueConstraint("api_key_hash", name=op.f("uq_participants_api_key_hash")),
        sa.UniqueConstraint("bic", name=op.f("uq_participants_bic")),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("instructing_bic", sa.String(length=11), nullable=False),
        sa.Column("end_to_end_id", sa.String(length=35), nullable=False),
        sa.Column("uetr", sa.UUID(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("debtor_name", sa.String(length=140), nullable=False),
        sa.Column("debtor_iban", sa.String(length=34), nullable=True),
        sa.Column("debtor_account", sa.String(length=34), nullable=True),
        sa.Column("debtor_agent_bic", sa.String(length=11), nullable=False),
        sa.Column("creditor_name", sa.String(length=140), nullable=False),
        sa.Column("creditor_iban", sa.String(length=34), nullable=True),
        sa.Column("creditor_account", sa.String(length=34), nullable=True),
        sa.Column("creditor_agent_bic", sa.String(length=11), nullable=False),
        sa.Column("remittance_info", sa.String(length=140), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("rejection_code", sa.String(length=8), nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('SCREENING', 'REJECTED', 'AWAITING_SETTLEMENT', 'SETTLED', 'COMPLETED', 'EXPIRED')",
            name=op.f("ck_payments_status"),
        ),
        sa.CheckConstraint(
            "(creditor_iban IS NOT NULL) <> (creditor_account IS NOT NULL)", name=op.f("ck_payments_creditor_account")
        ),
        sa.CheckConstraint(
            "(debtor_iban IS NOT NULL) <> (debtor_account IS NOT NULL)", name=op.f("ck_payments_debtor_account")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("instructing_bic", "end_to_end_id", name="uq_payments_sender_identity"),
        sa.UniqueConstraint("uetr", name=op.f("uq_payments_uetr")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_payments_workflow_id")),
    )
    op.create_index("ix_payments_end_to_end_id", "payments", ["end_to_end_id"], unique=False)
    op.create_index("ix_payments_status", "payments", ["status"], unique=False)
    op.create_table(
        "accounts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("participant_id", sa.UUID(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("debits_posted", sa.Numeric(precision=38, scale=5), server_default="0", nullable=False),
        sa.Column("credits_posted", sa.Numeric(precision=38, scale=5), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(kind = 'token' AND credits_posted >= debits_posted) OR (kind = 'fiat' AND debits_posted >= credits_posted)",
            name=op.f("ck_accounts_balance_not_negative"),
        ),
        sa.CheckConstraint("kind IN ('fiat', 'token')", name=op.f("ck_accounts_kind")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_accounts_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("participant_id", "currency", "kind", name="uq_accounts_owner"),
    )
    op.create_table(
        "bank_notifications",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("message_row_id", sa.UUID(), nullable=False),
        sa.Column("account", sa.String(length=70), nullable=False),
        sa.Column("entry_reference", sa.String(length=140), nullable=False),
        sa.Column("tx_index", sa.Integer(), nullable=False),
        sa.Column("end_to_end_id", sa.String(length=35), nullable=True),
        sa.Column("uetr", sa.String(length=36), nullable=True),
        sa.Column("bank_reference", sa.String(length=140), nullable=True),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("credit_debit", sa.String(length=4), nullable=False),
        sa.Column("entry_status", sa.String(length=8), nullable=False),
        sa.Column("reversal", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("booking_date", sa.Date(), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("outcome_detail", sa.Text(), nullable=True),
        sa.Column("payment_id", sa.UUID(), nullable=True),
        sa.Column("signalled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('MATCHED', 'UNMATCHED', 'AMBIGUOUS', 'NOT_BOOKED', 'NOT_A_CREDIT', 'AMOUNT_MISMATCH', 'PAYMENT_NOT_AWAITING')",
            name=op.f("ck_bank_notifications_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["message_row_id"],
            ["camt054_messages.id"],
            name=op.f("fk_bank_notifications_message_row_id_camt054_messages"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_bank_notifications_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bank_notifications")),
        sa.UniqueConstraint("account", "entry_reference", "tx_index", name="uq_bank_notifications_entry"),
    )
    op.create_index("ix_bank_notifications_end_to_end_id", "bank_notifications", ["end_to_end_id"], unique=False)
    op.create_index("ix_bank_notifications_payment", "bank_notifications", ["payment_id"], unique=False)
    op.create_index(
        "uq_bank_notifications_matched_payment",
        "bank_notifications",
        ["payment_id"],
        unique=True,
        postgresql_where=sa.text("outcome = 'MATCHED'"),
    )
    op.create_table(
        "compliance_results",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("reason_code", sa.String(length=8), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("screened_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_compliance_results_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compliance_results")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_compliance_results_payment_id")),
    )
    op.create_table(
        "net_positions",
        sa.Column("window_id", sa.UUID(), nullable=False),
        sa.Column("participant_id", sa.UUID(), nullable=False),
        sa.Column("net_amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_net_positions_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["window_id"], ["clearing_windows.id"], name=op.f("fk_net_positions_window_id_clearing_windows")
        ),
        sa.PrimaryKeyConstraint("window_id", "participant_id", name=op.f("pk_net_positions")),
    )
    op.create_table(
        "obligations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("payer_id", sa.UUID(), nullable=False),
        sa.Column("payee_id", sa.UUID(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="PENDING", nullable=False),
        sa.Column("settlement_mode", sa.String(length=8), server_default="GROSS", nullable=False),
        sa.Column("clearing_window_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("bank_confirmation_reference", sa.String(length=140), nullable=True),
        sa.Column("camt054_entry_reference", sa.String(length=140), nullable=True),
        sa.CheckConstraint("settlement_mode IN ('GROSS', 'NET')", name=op.f("ck_obligations_settlement_mode")),
        sa.CheckConstraint(
            "status <> 'SETTLED' OR (settled_at IS NOT NULL AND bank_confirmation_reference IS NOT NULL AND camt054_entry_reference IS NOT NULL)",
            name=op.f("ck_obligations_settled_has_references"),
        ),
        sa.CheckConstraint("status IN ('PENDING', 'SETTLED', 'RELEASED')", name=op.f("ck_obligations_status")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_obligations_amount_positive")),
        sa.ForeignKeyConstraint(
            ["clearing_window_id"],
            ["clearing_windows.id"],
            name=op.f("fk_obligations_clearing_window_id_clearing_windows"),
        ),
        sa.ForeignKeyConstraint(["payee_id"], ["participants.id"], name=op.f("fk_obligations_payee_id_participants")),
        sa.ForeignKeyConstraint(["payer_id"], ["participants.id"], name=op.f("fk_obligations_payer_id_participants")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_obligations_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_obligations")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_obligations_payment_id")),
    )
    op.create_index("ix_obligations_window", "obligations", ["clearing_window_id"], unique=False)
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("debit_account_id", sa.UUID(), nullable=False),
        sa.Column("credit_account_id", sa.UUID(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("obligation_id", sa.UUID(), nullable=True),
        sa.Column("notification_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('fiat_booked', 'obligation')", name=op.f("ck_ledger_transfers_kind")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_transfers_amount_positive")),
        sa.CheckConstraint("debit_account_id <> credit_account_id", name=op.f("ck_ledger_transfers_distinct_accounts")),
        sa.ForeignKeyConstraint(
            ["credit_account_id"], ["accounts.id"], name=op.f("fk_ledger_transfers_credit_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["debit_account_id"], ["accounts.id"], name=op.f("fk_ledger_transfers_debit_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["bank_notifications.id"],
            name=op.f("fk_ledger_transfers_notification_id_bank_notifications"),
        ),
        sa.ForeignKeyConstraint(
            ["obligation_id"], ["obligations.id"], name=op.f("fk_ledger_transfers_obligation_id_obligations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfers")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_ledger_transfers_idempotency_key")),
    )
    op.create_index("ix_ledger_transfers_obligation", "ledger_transfers", ["obligation_id"], unique=False)
    op.create_table(
        "tokens",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("obligation_id", sa.UUID(), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("transfer_id", sa.UUID(), nullable=False),
        sa.Column("minted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_tokens_amount_positive")),
        sa.ForeignKeyConstraint(
            ["obligation_id"], ["obligations.id"], name=op.f("fk_tokens_obligation_id_obligations")
        ),
        sa.ForeignKeyConstraint(["owner_id"], ["participants.id"], name=op.f("fk_tokens_owner_id_participants")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_tokens_payment_id_payments")),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["ledger_transfers.id"], name=op.f("fk_tokens_transfer_id_ledger_transfers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("obligation_id", name=op.f("uq_tokens_obligation_id")),
    )


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_index("ix_ledger_transfers_obligation", table_name="ledger_transfers")
    op.drop_table("ledger_transfers")
    op.drop_index("ix_obligations_window", table_name="obligations")
    op.drop_table("obligations")
    op.drop_table("net_positions")
    op.drop_table("compliance_results")
    op.drop_index(
        "uq_bank_notifications_matched_payment",
        table_name="bank_notifications",
        postgresql_where=sa.text("outcome = 'MATCHED'"),
    )
    op.drop_index("ix_bank_notifications_payment", table_name="bank_notifications")
    op.drop_index("ix_bank_notifications_end_to_end_id", table_name="bank_notifications")
    op.drop_table("bank_notifications")
    op.drop_table("accounts")
    op.drop_index("ix_payments_status", table_name="payments")
    op.drop_index("ix_payments_end_to_end_id", table_name="payments")
    op.drop_table("payments")
    op.drop_table("participants")
    op.drop_table("operator_keys")
    op.drop_index(
        "uq_clearing_windows_open_currency", table_name="clearing_windows", postgresql_where=sa.text("status = 'OPEN'")
    )
    op.drop_table("clearing_windows")
    op.drop_table("camt054_messages")
