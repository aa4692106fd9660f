"""events: the types refund.instructed and refund.completed

The bank a refund is owed to is told when the settlement agent is told to pay it, and
when its DBIT books it (deltran/refunds.py, deltran/intake/camt054.py).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

from alembic import op

revision = "0023"
down_revision = "0022"
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
    "payment.cancelled",
    "cancellation.requested",
    "cancellation.rejected",
    "payment.returned",
    "funding.instructed",
    "window.settled",
    "redemption.reserved",
    "redemption.payout_instructed",
    "redemption.completed",
    "redemption.released",
)
REFUND_EVENTS = ("refund.instructed", "refund.completed")


def _check(types: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_events_type"), "events", type_="check")
    op.create_check_constraint("type", "events", f"type IN ({', '.join(repr(t) for t in types)})")


def upgrade() -> None:
    _check(EVENT_TYPES + REFUND_EVENTS)


def downgrade() -> None:
    op.execute(f"DELETE FROM events WHERE type IN {REFUND_EVENTS!r}")
    _check(EVENT_TYPES)
