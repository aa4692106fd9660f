"""Scenario builders and probes for the token engine tests (tests/integration/
test_minting.py, test_mint_batching.py).

Every scenario builds its own rows (fresh participants unless given), so balances are
exact and nothing collides with other tests sharing the database.
"""

from __future__ import annotations

import hashlib
import random
import string
import uuid
from dataclasses import dataclass
from decimal import Decimal

import pytest
from sqlalchemy import func, or_, select
from temporalio.exceptions import ApplicationError

from activities.tokens import TokenActivities
from deltran import ledger
from deltran.db.tables import (
    Account,
    BankNotification,
    Camt054Message,
    LedgerTransfer,
    Obligation,
    Participant,
    Payment,
    Token,
)
from deltran.shared import MintInput
from deltran.temporal.errors import MINT_REFUSED
from deltran.vocabulary import ObligationStatus, PaymentStatus

AMOUNT = Decimal("2500.00")
CURRENCY = "AED"


@dataclass
class Scenario:
    payer_id: uuid.UUID
    payee_id: uuid.UUID
    payment_id: uuid.UUID
    obligation_id: uuid.UUID
    entry_reference: str
    notification_id: uuid.UUID | None
    currency: str = CURRENCY
    amount: Decimal = AMOUNT

    @property
    def mint_input(self) -> MintInput:
        return MintInput(payment_id=self.payment_id, obligation_id=self.obligation_id)


def _unique_bic() -> str:
    return "T" + uuid.uuid4().hex[:10].upper()


# Every "Q??" code once, in a random order: drawn at random with replacement, two of a
# session's fourteen draws from 676 codes shared a currency about one run in eight.
_PRIVATE_CURRENCIES = iter(
    random.sample([f"Q{a}{b}" for a in string.ascii_uppercase for b in string.ascii_uppercase], 676)
)


def private_currency() -> str:
    """A currency code no other test of this session uses: its supply and fiat are this
    test's alone, and a breaker opened for it stops nobody else's mints."""
    return next(_PRIVATE_CURRENCIES)


async def _participant(session, country: str) -> uuid.UUID:
    row = Participant(id=uuid.uuid4(), bic=_unique_bic(), name=f"Mint test bank {country}", country=country)
    session.add(row)
    await session.flush()
    return row.id


async def new_bank(sessions, country: str = "AE", currency: str = CURRENCY) -> uuid.UUID:
    async with sessions() as session, session.begin():
        bank = await _participant(session, country)
        await ledger.ensure_accounts(session, [bank], currency)
    return bank


async def make_scenario(
    sessions,
    *,
    settled: bool = True,
    payment_status: str = PaymentStatus.SETTLED,
    notification: bool = True,
    booked_amount: Decimal | None = None,
    booked_currency: str | None = None,
    entry_status: str = "BOOK",
    credit_debit: str = "CRDT",
    outcome: str = "MATCHED",
    currency: str = CURRENCY,
    amount: Decimal = AMOUNT,
    payer_id: uuid.UUID | None = None,
    payee_id: uuid.UUID | None = None,
) -> Scenario:
    """A payment from a payer bank to a payee bank (fresh ones unless given), its
    obligation (SETTLED with both references, or PENDING), and optionally the camt.054
    entry behind it."""
    e2e = f"MINT-{uuid.uuid4().hex[:16]}"
    entry_reference = f"NTRY-{uuid.uuid4().hex}"
    async with sessions() as session, session.begin():
        payer_id = payer_id or await _participant(session, "AE")
        payee_id = payee_id or await _participant(session, "IN")
        await ledger.ensure_accounts(session, [payer_id, payee_id], currency)
        payment = Payment(
            id=uuid.uuid4(),
            instructing_bic="EBILAEAD",
            end_to_end_id=e2e,
            fingerprint=hashlib.sha256(e2e.encode()).hexdigest(),
            amount=amount,
            currency=currency,
            debtor_name="Al Noor Trading LLC",
            debtor_iban="AE070331234567890123456",
            debtor_agent_bic="EBILAEAD",
            creditor_name="Ganesh Textiles Pvt Ltd",
            creditor_account="30001234567",
            creditor_agent_bic="SBININBB",
            status=payment_status,
            workflow_id=f"payment-test-mint-{uuid.uuid4()}",
        )
        session.add(payment)
        await session.flush()
        obligation = Obligation(
            id=uuid.uuid4(),
            payment_id=payment.id,
            payer_id=payer_id,
            payee_id=payee_id,
            amount=amount,
            currency=currency,
            status=ObligationStatus.PENDING,
        )
        if settled:
            obligation.status = ObligationStatus.SETTLED
            obligation.settled_at = func.now()
            obligation.bank_confirmation_reference = f"BR-{entry_reference}"
            obligation.camt054_entry_reference = entry_reference
        session.add(obligation)
        notification_id = None
        if notification:
            message = Camt054Message(
                id=uuid.uuid4(),
                message_id=f"MSG-{uuid.uuid4().hex[:20]}",
                body_sha256="0" * 64,
                body="<Document/>",
            )
            session.add(message)
            await session.flush()
            row = BankNotification(
                id=uuid.uuid4(),
                message_row_id=message.id,
                account="AE070331234567890123456",
                entry_reference=entry_reference,
                tx_index=0,
                end_to_end_id=e2e,
                bank_reference=f"BR-{entry_reference}",
                amount=amount if booked_amount is None else booked_amount,
                currency=booked_currency or currency,
                credit_debit=credit_debit,
                entry_status=entry_status,
                reversal=False,
                outcome=outcome,
                payment_id=payment.id,
            )
            session.add(row)
            notification_id = row.id
    return Scenario(payer_id, payee_id, payment.id, obligation.id, entry_reference, notification_id, currency, amount)


async def balances(sessions, s: Scenario) -> dict[str, Decimal]:
    async with sessions() as session:
        out = {}
        for who, pid in (("payer", s.payer_id), ("payee", s.payee_id)):
            for kind in ("fiat", "token"):
                acct = await ledger.account_id(session, pid, s.currency, kind)
                out[f"{who}_{kind}"] = await ledger.balance(session, acct)
        return out


async def transfer_count(sessions, s: Scenario) -> int:
    """Ledger transfers touching this scenario's accounts."""
    async with sessions() as session:
        accounts = select(Account.id).where(Account.participant_id.in_([s.payer_id, s.payee_id]))
        return await session.scalar(
            select(func.count())
            .select_from(LedgerTransfer)
            .where(
                or_(
                    LedgerTransfer.debit_account_id.in_(accounts),
                    LedgerTransfer.credit_account_id.in_(accounts),
                )
            )
        )


async def tokens_of(sessions, s: Scenario) -> list[Token]:
    async with sessions() as session:
        return list(await session.scalars(select(Token).where(Token.obligation_id == s.obligation_id)))


async def payment_status(sessions, s: Scenario) -> str:
    async with sessions() as session:
        return await session.scalar(select(Payment.status).where(Payment.id == s.payment_id))


ZERO = {"payer_fiat": 0, "payer_token": 0, "payee_fiat": 0, "payee_token": 0}


async def assert_refused(sessions, s: Scenario, fragment: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        await TokenActivities(sessions).mint_token(s.mint_input)
    assert caught.value.type == MINT_REFUSED == "MintRefused"
    assert caught.value.non_retryable is True
    assert fragment in str(caught.value)
    # Nothing was minted or posted.
    assert await tokens_of(sessions, s) == []
    assert await transfer_count(sessions, s) == 0
    assert await balances(sessions, s) == ZERO
