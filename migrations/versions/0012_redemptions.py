"""redemptions: tokens turned back into fiat

- accounts: two more kinds per bank and currency, `reserved` (tokens set aside for a
  payout: not spendable, still supply) and `paid_out` (fiat paid out to the bank), both
  credit-normal and never below zero.
- ledger_transfers: the kinds `reserved`, `released` and `redeemed`, and the redemption
  each belongs to.
- redemptions: one per bank and Idempotency-Key, its payout reference unique.
- bank_notifications: the redemption a booked DBIT entry paid out (at most one each),
  and the outcome PAYOUT_NOT_AWAITING.
- events: the redemption.* types.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ACCOUNT_KINDS = ("fiat", "token", "reserved", "paid_out")
TRANSFER_KINDS = ("fiat_booked", "obligation", "reserved", "released", "redeemed")
OUTCOMES = (
    "MATCHED",
    "UNMATCHED",
    "AMBIGUOUS",
    "NOT_BOOKED",
    "NOT_A_CREDIT",
    "AMOUNT_MISMATCH",
    "PAYMENT_NOT_AWAITING",
    "PAYOUT_NOT_AWAITING",
)
EVENT_TYPES = (
    "payment.accepted",
    "payment.rejected",
    "payment.awaiting_settlement",
    "payment.settled",
    "payment.completed",
    "payment.credited",
    "payment.expired",
    "funding.instructed",
    "window.settled",
    "redemption.reserved",
    "redemption.payout_instructed",
    "redemption.completed",
    "redemption.released",
)
REDEMPTION_STATUSES = ("RESERVED", "PAYOUT_INSTRUCTED", "COMPLETED", "RELEASED")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(name, table, condition)


def upgrade() -> None:
    _replace_check("accounts", "kind", _in("kind", ACCOUNT_KINDS))
    _replace_check(
        "accounts",
        "balance_not_negative",
        "(kind IN ('token', 'reserved', 'paid_out') AND credits_posted >= debits_posted)"
        " OR (kind = 'fiat' AND debits_posted >= credits_posted)",
    )
    _replace_check("ledger_transfers", "kind", _in("kind", TRANSFER_KINDS))
    _replace_check("bank_notifications", "outcome", _in("outcome", OUTCOMES))
    _replace_check("events", "type", _in("type", EVENT_TYPES))
    op.create_table(
        "redemptions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("participant_id", sa.UUID(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=35), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("payout_iban", sa.String(length=34), nullable=True),
        sa.Column("payout_account", sa.String(length=34), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.Column("workflow_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_redemptions_amount_positive")),
        sa.CheckConstraint(_in("status", REDEMPTION_STATUSES), name=op.f("ck_redemptions_status")),
        sa.CheckConstraint(
            "(payout_iban IS NOT NULL) <> (payout_account IS NOT NULL)", name=op.f("ck_redemptions_payout_account")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_redemptions_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["bank_notifications.id"],
            name=op.f("fk_redemptions_notification_id_bank_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("participant_id", "idempotency_key", name="uq_redemptions_idempotency"),
        sa.UniqueConstraint("reference", name=op.f("uq_redemptions_reference")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_redemptions_workflow_id")),
    )
    op.create_index("ix_redemptions_status", "redemptions", ["status", "created_at"], unique=False)
    for table in ("ledger_transfers", "bank_notifications"):
        op.add_column(table, sa.Column("redemption_id", sa.UUID(), nullable=True))
        op.create_foreign_key(
            op.f(f"fk_{table}_redemption_id_redemptions"), table, "redemptions", ["redemption_id"], ["id"]
        )
    op.create_index(
        "uq_bank_notifications_matched_redemption",
        "bank_notifications",
        ["redemption_id"],
        unique=True,
        postgresql_where=sa.text("outcome = 'MATCHED'"),
    )


def downgrade() -> None:
    op.drop_index("uq_bank_notifications_matched_redemption", table_name="bank_notifications")
    for table in ("ledger_transfers", "bank_notifications"):
        op.drop_constraint(f"fk_{table}_redemption_id_redemptions", table, type_="foreignkey")
        op.drop_column(table, "redemption_id")
    op.drop_index("ix_redemptions_status", table_name="redemptions")
    op.drop_table("redemptions")
    _replace_check("events", "type", _in("type", EVENT_TYPES[:9]))
    _replace_check("bank_notifications", "outcome", _in("outcome", OUTCOMES[:-1]))
    _replace_check("ledger_transfers", "kind", _in("kind", TRANSFER_KINDS[:2]))
    _replace_check(
        "accounts",
        "balance_not_negative",
        "(kind = 'token' AND credits_posted >= debits_posted) OR (kind = 'fiat' AND debits_posted >= credits_posted)",
    )
    _replace_check("accounts", "kind", _in("kind", ACCOUNT_KINDS[:2]))
