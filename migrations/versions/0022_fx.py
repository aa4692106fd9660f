"""FX: providers, the pairs the admin allows, rate sheets and quotes

- participants.fx_provider: the participant quotes FX (deltran/fx.py).
- fx_pairs: an allowed pair and its limits (max spread, max quote lifetime).
- fx_rates: each provider's bid/ask per pair, valid until a time.
- fx_quotes: a locked rate and both amounts for one payment of a debtor agent.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "participants", sa.Column("fx_provider", sa.Boolean(), server_default=sa.text("false"), nullable=False)
    )
    op.create_table(
        "fx_pairs",
        sa.Column("pair", sa.String(length=7), nullable=False),
        sa.Column("max_spread", sa.Numeric(precision=12, scale=8), nullable=False),
        sa.Column("max_quote_lifetime_s", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("max_spread >= 0 AND max_spread < 1", name=op.f("ck_fx_pairs_max_spread")),
        sa.CheckConstraint("max_quote_lifetime_s > 0", name=op.f("ck_fx_pairs_max_quote_lifetime_s")),
        sa.PrimaryKeyConstraint("pair", name=op.f("pk_fx_pairs")),
    )
    op.create_table(
        "fx_rates",
        sa.Column("provider_id", sa.UUID(), nullable=False),
        sa.Column("pair", sa.String(length=7), nullable=False),
        sa.Column("bid", sa.Numeric(precision=21, scale=10), nullable=False),
        sa.Column("ask", sa.Numeric(precision=21, scale=10), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("bid > 0 AND bid <= ask", name=op.f("ck_fx_rates_bid_ask")),
        sa.ForeignKeyConstraint(
            ["pair"], ["fx_pairs.pair"], name=op.f("fk_fx_rates_pair_fx_pairs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["participants.id"], name=op.f("fk_fx_rates_provider_id_participants")
        ),
        sa.PrimaryKeyConstraint("provider_id", "pair", name=op.f("pk_fx_rates")),
    )
    op.create_table(
        "fx_quotes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("debtor_agent_id", sa.UUID(), nullable=False),
        sa.Column("provider_id", sa.UUID(), nullable=False),
        sa.Column("source_currency", sa.String(length=3), nullable=False),
        sa.Column("source_amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("target_currency", sa.String(length=3), nullable=False),
        sa.Column("target_amount", sa.Numeric(precision=38, scale=5), nullable=False),
        sa.Column("rate", sa.Numeric(precision=21, scale=10), nullable=False),
        sa.Column("fixed", sa.String(length=6), nullable=False),
        sa.Column("status", sa.String(length=8), server_default="OPEN", nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("source_amount > 0 AND target_amount > 0 AND rate > 0", name=op.f("ck_fx_quotes_positive")),
        sa.CheckConstraint("source_currency <> target_currency", name=op.f("ck_fx_quotes_two_currencies")),
        sa.CheckConstraint("fixed IN ('SOURCE', 'TARGET')", name=op.f("ck_fx_quotes_fixed")),
        sa.CheckConstraint("status IN ('OPEN', 'USED')", name=op.f("ck_fx_quotes_status")),
        sa.CheckConstraint("(status = 'USED') = (payment_id IS NOT NULL)", name=op.f("ck_fx_quotes_used_by_a_payment")),
        sa.ForeignKeyConstraint(
            ["debtor_agent_id"], ["participants.id"], name=op.f("fk_fx_quotes_debtor_agent_id_participants")
        ),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_fx_quotes_payment_id_payments")),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["participants.id"], name=op.f("fk_fx_quotes_provider_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fx_quotes")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_fx_quotes_payment_id")),
    )
    op.create_index("ix_fx_quotes_debtor_agent", "fx_quotes", ["debtor_agent_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_fx_quotes_debtor_agent", table_name="fx_quotes")
    op.drop_table("fx_quotes")
    op.drop_table("fx_rates")
    op.drop_table("fx_pairs")
    op.drop_column("participants", "fx_provider")
