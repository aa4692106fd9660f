"""cancellations: a debtor agent's recall of its payment (camt.056) and its answer

- payments: the status CANCELLED.
- events: the types payment.cancelled, cancellation.requested, cancellation.rejected.
- cancellations: one per payment, CNCL | PDCR | RJCR; a creditor agent's open
  investigations (PDCR) indexed.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

PAYMENT_STATUSES = ("SCREENING", "REJECTED", "AWAITING_SETTLEMENT", "SETTLED", "COMPLETED", "EXPIRED", "CANCELLED")
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
    "funding.instructed",
    "window.settled",
    "redemption.reserved",
    "redemption.payout_instructed",
    "redemption.completed",
    "redemption.released",
)
NEW_EVENT_TYPES = ("payment.cancelled", "cancellation.requested", "cancellation.rejected")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _replace_check(table: str, name: str, condition: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    op.create_check_constraint(name, table, condition)


def upgrade() -> None:
    _replace_check("payments", "status", _in("status", PAYMENT_STATUSES))
    _replace_check("events", "type", _in("type", EVENT_TYPES))
    op.create_table(
        "cancellations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("payment_id", sa.UUID(), nullable=False),
        sa.Column("requested_by", sa.UUID(), nullable=False),
        sa.Column("assignee_id", sa.UUID(), nullable=False),
        sa.Column("case_id", sa.String(length=35), nullable=False),
        sa.Column("reason_code", sa.String(length=4), nullable=False),
        sa.Column("reason", sa.String(length=105), nullable=True),
        sa.Column("status", sa.String(length=4), nullable=False),
        sa.Column("status_reason_code", sa.String(length=4), nullable=True),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('CNCL', 'PDCR', 'RJCR')", name=op.f("ck_cancellations_status")),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"], name=op.f("fk_cancellations_payment_id_payments")),
        sa.ForeignKeyConstraint(
            ["requested_by"], ["participants.id"], name=op.f("fk_cancellations_requested_by_participants")
        ),
        sa.ForeignKeyConstraint(
            ["assignee_id"], ["participants.id"], name=op.f("fk_cancellations_assignee_id_participants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cancellations")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_cancellations_payment_id")),
    )
    op.create_index(
        "ix_cancellations_pending",
        "cancellations",
        ["assignee_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'PDCR'"),
    )


def downgrade() -> None:
    op.drop_index("ix_cancellations_pending", table_name="cancellations")
    op.drop_table("cancellations")
    _replace_check("events", "type", _in("type", tuple(t for t in EVENT_TYPES if t not in NEW_EVENT_TYPES)))
    _replace_check("payments", "status", _in("status", PAYMENT_STATUSES[:-1]))
