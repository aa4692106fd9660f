"""circuit breakers and reconciliation runs

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "circuit_breakers",
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("state", sa.String(length=8), server_default="CLOSED", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=64), nullable=True),
        sa.CheckConstraint("state IN ('OPEN', 'CLOSED')", name=op.f("ck_circuit_breakers_state")),
        sa.PrimaryKeyConstraint("currency", name=op.f("pk_circuit_breakers")),
    )
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("breaks", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("break_count", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint("tier IN ('intraday', 'end_of_day')", name=op.f("ck_reconciliation_runs_tier")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    op.create_index("ix_reconciliation_runs_tier_started", "reconciliation_runs", ["tier", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reconciliation_runs_tier_started", table_name="reconciliation_runs")
    op.drop_table("reconciliation_runs")
    op.drop_table("circuit_breakers")
