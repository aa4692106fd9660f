"""cancellations: the message a recall came as (camt.056.001.12, or none for JSON)

For the tracker: a recall's state names the message behind it.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cancellations", sa.Column("message_name", sa.String(length=35), nullable=True))


def downgrade() -> None:
    op.drop_column("cancellations", "message_name")
