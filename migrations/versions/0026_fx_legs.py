"""cross-currency payments: two legs per payment, settled payment versus payment

- obligations.leg: SOURCE (every payment's, as before) or TARGET (a cross-currency
  payment's provider → creditor agent leg); unique per payment and leg instead of per
  payment.
- obligations.escrowed: a net leg whose window moves its tokens into the payee's escrow
  account; obligations.status UNWOUND: a leg given back to its payer because the other
  leg never settled.
- accounts.kind escrow; transfer kinds escrow_released, escrow_unwound.
- clearing_windows.escrowed_amount: what a window moved into escrow (its bank positions
  sum to minus it).
- one matched camt.054 entry per payment and currency (one per leg).

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

ACCOUNT_KINDS = ("fiat", "token", "reserved", "paid_out")
TRANSFER_KINDS = ("fiat_booked", "obligation", "reserved", "released", "redeemed", "returned")
STATUSES = ("PENDING", "SETTLED", "RELEASED")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(name, table, condition)


def _balance_check(credit_normal: tuple[str, ...]) -> None:
    _replace_check(
        "accounts",
        "balance_not_negative",
        f"({_in('kind', credit_normal)} AND credits_posted >= debits_posted)"
        " OR (kind = 'fiat' AND debits_posted >= credits_posted)",
    )


def _settled_check(statuses: tuple[str, ...]) -> None:
    _replace_check(
        "obligations",
        "settled_has_references",
        f"status NOT IN ({', '.join(repr(s) for s in statuses)}) OR (settled_at IS NOT NULL"
        " AND bank_confirmation_reference IS NOT NULL"
        " AND camt054_entry_reference IS NOT NULL)",
    )


def _matched_payment_index(*columns: str) -> None:
    op.drop_index("uq_bank_notifications_matched_payment", table_name="bank_notifications")
    op.create_index(
        "uq_bank_notifications_matched_payment",
        "bank_notifications",
        list(columns),
        unique=True,
        postgresql_where=sa.text("outcome = 'MATCHED'"),
    )


def upgrade() -> None:
    op.add_column("obligations", sa.Column("leg", sa.String(length=8), server_default="SOURCE", nullable=False))
    op.add_column("obligations", sa.Column("escrowed", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_check_constraint("leg", "obligations", "leg IN ('SOURCE', 'TARGET')")
    op.create_check_constraint("escrowed_net", "obligations", "NOT escrowed OR settlement_mode = 'NET'")
    op.create_unique_constraint(op.f("uq_obligations_payment_leg"), "obligations", ["payment_id", "leg"])
    op.drop_constraint(op.f("uq_obligations_payment_id"), "obligations", type_="unique")
    _replace_check("obligations", "status", _in("status", (*STATUSES, "UNWOUND")))
    _settled_check(("SETTLED", "UNWOUND"))
    _replace_check("accounts", "kind", _in("kind", (*ACCOUNT_KINDS, "escrow")))
    _balance_check(("token", "reserved", "paid_out", "escrow"))
    _replace_check("ledger_transfers", "kind", _in("kind", (*TRANSFER_KINDS, "escrow_released", "escrow_unwound")))
    op.add_column(
        "clearing_windows", sa.Column("escrowed_amount", sa.Numeric(38, 5), server_default="0", nullable=False)
    )
    _matched_payment_index("payment_id", "currency")


def downgrade() -> None:
    # A second leg has nowhere to go in the older schema: refuse rather than drop money.
    bind = op.get_bind()
    legs = bind.execute(sa.text("SELECT count(*) FROM obligations WHERE leg <> 'SOURCE'")).scalar()
    if legs:
        raise RuntimeError(f"{legs} cross-currency leg(s) exist: the schema before 0026 cannot hold them")
    _matched_payment_index("payment_id")
    op.drop_column("clearing_windows", "escrowed_amount")
    _replace_check("ledger_transfers", "kind", _in("kind", TRANSFER_KINDS))
    _balance_check(("token", "reserved", "paid_out"))
    _replace_check("accounts", "kind", _in("kind", ACCOUNT_KINDS))
    _settled_check(("SETTLED",))
    _replace_check("obligations", "status", _in("status", STATUSES))
    op.create_unique_constraint(op.f("uq_obligations_payment_id"), "obligations", ["payment_id"])
    op.drop_constraint(op.f("uq_obligations_payment_leg"), "obligations", type_="unique")
    op.drop_constraint(op.f("ck_obligations_escrowed_net"), "obligations", type_="check")
    op.drop_constraint(op.f("ck_obligations_leg"), "obligations", type_="check")
    op.drop_column("obligations", "escrowed")
    op.drop_column("obligations", "leg")
