"""events a bank is told and its webhook endpoint

- events: written in the transaction of the change each reports; numbered (seq) after
  commit, in the order of writing, for GET /v1/events and webhook delivery.
- webhooks: one endpoint per bank, with the secret that signs its deliveries.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

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
)
DELIVERY_STATUSES = ("PENDING", "DELIVERED", "FAILED", "NO_WEBHOOK")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("written", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("participant_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("delivery_status", sa.String(length=12), server_default="PENDING", nullable=False),
        sa.Column("delivery_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_error", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("type", EVENT_TYPES), name=op.f("ck_events_type")),
        sa.CheckConstraint(_in("delivery_status", DELIVERY_STATUSES), name=op.f("ck_events_delivery_status")),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_events_participant_id_participants")
        ),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_events_payment_id_payments")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("written", name=op.f("uq_events_written")),
        sa.UniqueConstraint("seq", name=op.f("uq_events_seq")),
    )
    op.create_index(
        "ix_events_unnumbered", "events", ["written"], unique=False, postgresql_where=sa.text("seq IS NULL")
    )
    op.create_index("ix_events_feed", "events", ["participant_id", "seq"], unique=False)
    op.create_index(
        "ix_events_undelivered",
        "events",
        ["participant_id", "seq"],
        unique=False,
        postgresql_where=sa.text("delivery_status = 'PENDING'"),
    )
    op.create_table(
        "webhooks",
        sa.Column("participant_id", sa.UUID(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("after_seq", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["participant_id"], ["participants.id"], name=op.f("fk_webhooks_participant_id_participants")
        ),
        sa.PrimaryKeyConstraint("participant_id", name=op.f("pk_webhooks")),
    )


def downgrade() -> None:
    op.drop_table("webhooks")
    op.drop_index("ix_events_undelivered", table_name="events")
    op.drop_index("ix_events_feed", table_name="events")
    op.drop_index("ix_events_unnumbered", table_name="events")
    op.drop_table("events")
