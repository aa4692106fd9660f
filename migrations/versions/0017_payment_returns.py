"""payment_returns: a settled payment sent back by its creditor agent (pacs.004)

- payments: the statuses PARTIALLY_RETURNED and RETURNED.
- ledger_transfers: the kind `returned` (token[creditor agent] → token[debtor agent]).
- events: the type payment.returned.
- payment_returns: one per creditor agent and return key, the transfer that moved it.
- cancellations: the return that answered an accepted recall.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

PAYMENT_STATUSES = (
    "SCREENING",
    "REJECTED",
    "AWAITING_SETTLEMENT",
    "SETTLED",
    "COMPLETED",
    "EXPIRED",
    "CANCELLED",
    "PARTIALLY_RETURNED",
    "RETURNED",
)
TRANSFER_KINDS = ("fiat_booked", "obligation", "reserved", "released", "redeemed", "returned")
EVENT_TYPES = (
    "payment.accepted",
    "payment.rejected",
    "payment.awaiting_settlement",
    "payment.settled",
    "payment.completed",
    "payment.credited",
    "payment.expired",
    "payment.cancelled",
    "cancellation.requested",
    "cancellation.rejected",
    "payment.returned",
    "funding.instructed",
    "window.settled",
    "redemption.reserved",
    "redemption.payout_instructed",
    "redemption.completed",
    "redemption.released",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(name, table, condition)


def upgrade() -> None:
    _replace_check("payments", "status", _in("status", PAYMENT_STATUSES))
    _replace_check("ledger_transfers", "kind", _in("kind", TRANSFER_KINDS))
    _replace_check("events", "type", _in("type", EVENT_TYPES))
    op.create_table(
        "payment_returns",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("returned_by", sa.UUID(), nullable=False),
        sa.Column("return_key", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason_code", sa.String(length=4), nullable=False),
        sa.Column("reason", sa.String(length=105), nullable=True),
        sa.Column("message_id", sa.String(length=35), nullable=True),
        sa.Column("transfer_id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payment_returns_amount_positive")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_payment_returns_payment_id_payments")),
        sa.ForeignKeyConstraint(
            ["returned_by"], ["participants.id"], name=op.f("fk_payment_returns_returned_by_participants")
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["ledger_transfers.id"], name=op.f("fk_payment_returns_transfer_id_ledger_transfers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_returns")),
        sa.UniqueConstraint("returned_by", "return_key", name="uq_payment_returns_key"),
    )
    op.create_index(op.f("ix_payment_returns_payment_id"), "payment_returns", ["payment_id"], unique=False)
    op.add_column("cancellations", sa.Column("return_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_cancellations_return_id_payment_returns"), "cancellations", "payment_returns", ["return_id"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_cancellations_return_id_payment_returns"), "cancellations", type_="foreignkey")
    op.drop_column("cancellations", "return_id")
    op.drop_index(op.f("ix_payment_returns_payment_id"), table_name="payment_returns")
    op.drop_table("payment_returns")
    _replace_check("events", "type", _in("type", tuple(t for t in EVENT_TYPES if t != "payment.returned")))
    _replace_check("ledger_transfers", "kind", _in("kind", TRANSFER_KINDS[:-1]))
    _replace_check("payments", "status", _in("status", PAYMENT_STATUSES[:-2]))
