"""payments keep the references of the message they came in (pacs.008 MsgId, InstrId,
TxId, settlement date, charge bearer) and its format

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("source_format", sa.String(length=20), server_default="json", nullable=False))
    op.add_column("payments", sa.Column("message_id", sa.String(length=35), nullable=True))
    op.add_column("payments", sa.Column("instruction_id", sa.String(length=35), nullable=True))
    op.add_column("payments", sa.Column("transaction_id", sa.String(length=35), nullable=True))
    op.add_column("payments", sa.Column("settlement_date", sa.Date(), nullable=True))
    op.add_column("payments", sa.Column("charge_bearer", sa.String(length=4), nullable=True))


def downgrade() -> None:
    for column in (
        "charge_bearer",
        "settlement_date",
        "transaction_id",
        "instruction_id",
        "message_id",
        "source_format",
    ):
        op.drop_column("payments", column)
