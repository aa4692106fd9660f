"""refunds: held by ops or compliance, and when each was put on the agent's list

- refunds.status: HELD (POST /v1/admin/refunds/{reference}/hold; released back to
  PAYOUT_INSTRUCTED), with its reason in held_reason.
- refunds.instructed_at: when the refund was last put on the settlement agent's list —
  its payout deadline runs from then (created_at for those made before).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

STATUSES = ("PAYOUT_INSTRUCTED", "COMPLETED", "BY_HAND")


def _status_check(statuses: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_refunds_status"), "refunds", type_="check")
    op.create_check_constraint("status", "refunds", f"status IN ({', '.join(repr(s) for s in statuses)})")


def upgrade() -> None:
    op.add_column("refunds", sa.Column("held_reason", sa.Text(), nullable=True))
    op.add_column("refunds", sa.Column("instructed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE refunds SET instructed_at = created_at")
    op.alter_column("refunds", "instructed_at", nullable=False, server_default=sa.text("now()"))
    _status_check((*STATUSES, "HELD"))


def downgrade() -> None:
    # A compliance hold is not silently lifted: release or settle them first.
    held = op.get_bind().execute(sa.text("SELECT count(*) FROM refunds WHERE status = 'HELD'")).scalar()
    if held:
        raise RuntimeError(f"{held} refund(s) are HELD: release them (or record them returned) before downgrading")
    _status_check(STATUSES)
    op.drop_column("refunds", "instructed_at")
    op.drop_column("refunds", "held_reason")
