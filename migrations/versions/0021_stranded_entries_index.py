"""refunds of credits of the wrong amount and of late or short window fundings

A credit whose amount or currency is not its payment's, or that funds a window's
instruction too late or too little, is now refunded by the sweeper (deltran/refunds.py):
- the partial index the sweeper reads covers AMOUNT_MISMATCH as well as
  PAYMENT_NOT_AWAITING;
- such entries booked before now were returned by hand (the runbook said so): recorded
  BY_HAND, so the sweeper never pays them a second time. Not those the agent reversed,
  nor the frozen fiat of a payment rejected for sanctions (RR04) or a suspended bank
  (AG01): they stay on the end-of-day lists for ops and compliance.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

NEW = "ix_bank_notifications_stranded"
OLD = "ix_bank_notifications_not_awaiting"


def upgrade() -> None:
    op.execute(
        """
        INSERT INTO refunds (id, entry_id, participant_id, reference, currency, amount, status, reason)
        SELECT s.id, s.entry_id, s.participant_id, 'RFD-' || upper(left(replace(s.id::text, '-', ''), 28)),
               s.currency, s.amount, 'BY_HAND', 'stranded before these refunds existed: returned by hand'
        FROM (
            SELECT gen_random_uuid() AS id, n.id AS entry_id, coalesce(f.participant_id, bank.id) AS participant_id,
                   n.currency, n.amount
            FROM bank_notifications n
            LEFT JOIN funding_instructions f ON f.id = n.funding_instruction_id
            LEFT JOIN payments p ON p.id = n.payment_id
            LEFT JOIN participants bank ON bank.bic = p.debtor_agent_bic
            WHERE (n.outcome = 'AMOUNT_MISMATCH' OR (n.outcome = 'PAYMENT_NOT_AWAITING' AND f.id IS NOT NULL))
              AND n.credit_debit = 'CRDT' AND n.entry_status = 'BOOK' AND NOT n.reversal AND n.amount > 0
              AND coalesce(f.participant_id, bank.id) IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.entry_id = n.id)
              AND NOT coalesce(p.status = 'REJECTED' AND p.rejection_code IN ('RR04', 'AG01'), false)
              AND NOT EXISTS (
                  SELECT 1 FROM bank_notifications rv
                  WHERE rv.reversal AND rv.account = n.account AND rv.end_to_end_id IS NOT DISTINCT FROM n.end_to_end_id
                    AND rv.amount = n.amount AND rv.currency = n.currency
              )
        ) AS s
        """
    )
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NEW}")  # a failed concurrent build's leftover
        op.execute(
            f"CREATE INDEX CONCURRENTLY {NEW} ON bank_notifications (received_at, id)"
            " WHERE outcome IN ('PAYMENT_NOT_AWAITING', 'AMOUNT_MISMATCH')"
        )
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {OLD}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {OLD}")
        op.execute(
            f"CREATE INDEX CONCURRENTLY {OLD} ON bank_notifications (received_at, id)"
            " WHERE outcome = 'PAYMENT_NOT_AWAITING'"
        )
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NEW}")
