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
_MATCHED = "uq_bank_notifications_matched_payment"
_MATCHED_NEW = "uq_bank_notifications_matched_payment_currency"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(name, table, condition)


def _balance_condition(credit_normal: tuple[str, ...]) -> str:
    return (
        f"({_in('kind', credit_normal)} AND credits_posted >= debits_posted)"
        " OR (kind = 'fiat' AND debits_posted >= credits_posted)"
    )


def _settled_condition(statuses: tuple[str, ...]) -> str:
    return (
        f"status NOT IN ({', '.join(repr(s) for s in statuses)}) OR (settled_at IS NOT NULL"
        " AND bank_confirmation_reference IS NOT NULL"
        " AND camt054_entry_reference IS NOT NULL)"
    )


# The new CHECKs, and those that widen an old one: the rows already there hold, validated
# after the commit.
_NEW_CHECKS = (
    ("obligations", "leg", "leg IN ('SOURCE', 'TARGET')"),
    ("obligations", "escrowed_net", "NOT escrowed OR settlement_mode = 'NET'"),
)
_WIDENED_CHECKS = (
    ("obligations", "status", _in("status", (*STATUSES, "UNWOUND"))),
    ("obligations", "settled_has_references", _settled_condition(("SETTLED", "UNWOUND"))),
    ("accounts", "kind", _in("kind", (*ACCOUNT_KINDS, "escrow"))),
    ("accounts", "balance_not_negative", _balance_condition(("token", "reserved", "paid_out", "escrow"))),
    ("ledger_transfers", "kind", _in("kind", (*TRANSFER_KINDS, "escrow_released", "escrow_unwound"))),
)


def upgrade() -> None:
    # Re-runnable: what the transaction below commits stays if the concurrent part after it
    # fails (a lock that timed out, a dropped connection), so a second run finds it done.
    # In the migration's transaction, each lock brief: new columns with constant defaults
    # (no rewrite), the widened CHECKs NOT VALID.
    op.execute("ALTER TABLE obligations ADD COLUMN IF NOT EXISTS leg VARCHAR(8) DEFAULT 'SOURCE' NOT NULL")
    op.execute("ALTER TABLE obligations ADD COLUMN IF NOT EXISTS escrowed BOOLEAN DEFAULT false NOT NULL")
    op.execute(
        "ALTER TABLE clearing_windows ADD COLUMN IF NOT EXISTS escrowed_amount NUMERIC(38, 5) DEFAULT 0 NOT NULL"
    )
    for table, name, condition in (*_NEW_CHECKS, *_WIDENED_CHECKS):
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS ck_{table}_{name}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_{name} CHECK ({condition}) NOT VALID")
    # After its commit, without blocking writes: the unique indexes built concurrently (a
    # failed build's leftover dropped first) and swapped in, each swap's lock bounded; the
    # CHECKs validated.
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        op.execute("SET lock_timeout = '10s'")
        if not bind.execute(
            sa.text("SELECT 1 FROM pg_constraint WHERE conname = 'uq_obligations_payment_leg'")
        ).first():
            op.execute("DROP INDEX CONCURRENTLY IF EXISTS uq_obligations_payment_leg")
            op.execute("CREATE UNIQUE INDEX CONCURRENTLY uq_obligations_payment_leg ON obligations (payment_id, leg)")
            op.execute(
                "ALTER TABLE obligations ADD CONSTRAINT uq_obligations_payment_leg"
                " UNIQUE USING INDEX uq_obligations_payment_leg"
            )
        op.execute("ALTER TABLE obligations DROP CONSTRAINT IF EXISTS uq_obligations_payment_id")
        swapped = bind.execute(
            sa.text("SELECT 1 FROM pg_indexes WHERE indexname = :name AND indexdef LIKE '%currency%'"),
            {"name": _MATCHED},
        ).first()
        if not swapped:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_MATCHED_NEW}")
            op.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY {_MATCHED_NEW} ON bank_notifications (payment_id, currency)"
                " WHERE outcome = 'MATCHED'"
            )
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_MATCHED}")
            op.execute(f"ALTER INDEX {_MATCHED_NEW} RENAME TO {_MATCHED}")
        for table, name, _ in (*_NEW_CHECKS, *_WIDENED_CHECKS):
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT ck_{table}_{name}")
        op.execute("RESET lock_timeout")


def downgrade() -> None:
    # A second leg has nowhere to go in the older schema, and a payment that took a quote
    # would be settled as one in a single currency: refuse rather than drop money.
    bind = op.get_bind()
    legs = bind.execute(sa.text("SELECT count(*) FROM obligations WHERE leg <> 'SOURCE'")).scalar()
    quoted = bind.execute(
        sa.text(
            "SELECT count(*) FROM fx_quotes q JOIN payments p ON p.id = q.payment_id"
            " WHERE p.status IN ('SCREENING', 'AWAITING_SETTLEMENT', 'SETTLED')"
        )
    ).scalar()
    if legs or quoted:
        raise RuntimeError(
            f"{legs} cross-currency leg(s), {quoted} cross-currency payment(s) in flight:"
            " the schema before 0026 cannot hold them"
        )
    op.drop_index(_MATCHED, table_name="bank_notifications")
    op.create_index(
        _MATCHED, "bank_notifications", ["payment_id"], unique=True, postgresql_where=sa.text("outcome = 'MATCHED'")
    )
    op.drop_column("clearing_windows", "escrowed_amount")
    _replace_check("ledger_transfers", "kind", _in("kind", TRANSFER_KINDS))
    _replace_check("accounts", "balance_not_negative", _balance_condition(("token", "reserved", "paid_out")))
    _replace_check("accounts", "kind", _in("kind", ACCOUNT_KINDS))
    _replace_check("obligations", "settled_has_references", _settled_condition(("SETTLED",)))
    _replace_check("obligations", "status", _in("status", STATUSES))
    op.create_unique_constraint(op.f("uq_obligations_payment_id"), "obligations", ["payment_id"])
    op.drop_constraint(op.f("uq_obligations_payment_leg"), "obligations", type_="unique")
    op.drop_constraint(op.f("ck_obligations_escrowed_net"), "obligations", type_="check")
    op.drop_constraint(op.f("ck_obligations_leg"), "obligations", type_="check")
    op.drop_column("obligations", "escrowed")
    op.drop_column("obligations", "leg")
