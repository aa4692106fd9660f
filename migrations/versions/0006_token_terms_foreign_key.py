"""tokens carry their obligation's terms (one composite foreign key); no index on ledger_transfers.obligation_id

Minting is the hottest insert path (`make bench-mint`). A token had three foreign keys
(obligation, payment, owner), each a per-row check; one composite key to the obligation's
(id, payment_id, payee_id, amount, currency) replaces them and checks more: a token can
no longer name another payment, owner, amount or currency than its obligation's. The
index on ledger_transfers.obligation_id served no query (an obligation's transfer is
found by its idempotency key) and cost an index insert per posting.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_unique_constraint(
        "uq_obligations_token_terms", "obligations", ["id", "payment_id", "payee_id", "amount", "currency"]
    )
    op.drop_constraint("fk_tokens_obligation_id_obligations", "tokens", type_="foreignkey")
    op.drop_constraint("fk_tokens_payment_id_payments", "tokens", type_="foreignkey")
    op.drop_constraint("fk_tokens_owner_id_participants", "tokens", type_="foreignkey")
    op.create_foreign_key(
        "fk_tokens_obligation_terms",
        "tokens",
        "obligations",
        ["obligation_id", "payment_id", "owner_id", "amount", "currency"],
        ["id", "payment_id", "payee_id", "amount", "currency"],
    )
    op.drop_index("ix_ledger_transfers_obligation", table_name="ledger_transfers")


def downgrade() -> None:
    op.create_index("ix_ledger_transfers_obligation", "ledger_transfers", ["obligation_id"], unique=False)
    op.drop_constraint("fk_tokens_obligation_terms", "tokens", type_="foreignkey")
    op.create_foreign_key("fk_tokens_owner_id_participants", "tokens", "participants", ["owner_id"], ["id"])
    op.create_foreign_key("fk_tokens_payment_id_payments", "tokens", "payments", ["payment_id"], ["id"])
    op.create_foreign_key("fk_tokens_obligation_id_obligations", "tokens", "obligations", ["obligation_id"], ["id"])
    op.drop_constraint("uq_obligations_token_terms", "obligations", type_="unique")
