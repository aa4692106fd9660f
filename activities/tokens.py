"""Token engine: mints the token for a settled obligation, backed 1:1 by booked fiat.

Before it mints it validates (MISSION.md, "The payment lifecycle", step 6): the
obligation is SETTLED; its bank reference is present; no token exists yet for it (the
unique index on tokens.obligation_id is the final guard, even when two mints race); the
fiat is verified on the account (a booked camt.054 credit of exactly this amount and
currency, matched to this payment). Then, in the same transaction, on the double-entry
ledger: the booked fiat is minted to the payer (fiat[payer] → token[payer]) and the
settled obligation moves it to the payee (token[payer] → token[payee]).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import ledger, reconciliation
from activities.errors import mint_refused
from deltran import metrics
from deltran.db.tables import BankNotification, ClearingWindow, LedgerTransfer, Obligation, Payment, Token
from deltran.shared import MintInput, MintResult, ObligationStatus, PaymentStatus


@dataclass(frozen=True)
class FiatEvidence:
    """The booked camt.054 entry the obligation's closure refers to."""

    entry_status: str
    credit_debit: str
    reversal: bool
    amount: Decimal
    currency: str
    outcome: str


def mint_refusal(obligation: Obligation, fiat: FiatEvidence | None) -> str | None:
    """Why this obligation may not be minted, or None. Pure: tested for every case."""
    if obligation.status != ObligationStatus.SETTLED:
        return f"obligation is {obligation.status}, not SETTLED"
    if not obligation.bank_confirmation_reference or not obligation.camt054_entry_reference:
        return "the bank confirmation reference is missing"
    if fiat is None:
        return "no booked camt.054 entry backs this obligation"
    if fiat.entry_status != "BOOK" or fiat.credit_debit != "CRDT" or fiat.reversal:
        return "the backing camt.054 entry is not a booked credit"
    if fiat.outcome != "MATCHED":
        return f"the backing camt.054 entry is {fiat.outcome}"
    if fiat.amount != obligation.amount or fiat.currency != obligation.currency:
        return (
            f"booked fiat {fiat.amount} {fiat.currency} does not equal the obligation's"
            f" {obligation.amount} {obligation.currency}"
        )
    return None


def net_mint_refusal(obligation: Obligation, window_status: str | None, transfer_posted: bool) -> str | None:
    """Why a net obligation may not be minted, or None. Pure."""
    if obligation.status != ObligationStatus.SETTLED:
        return f"obligation is {obligation.status}, not SETTLED"
    if not obligation.bank_confirmation_reference or not obligation.camt054_entry_reference:
        return "the window settlement reference is missing"
    if window_status not in ("SETTLED", "PARTIALLY_SETTLED"):
        return f"its clearing window is {window_status}, not settled"
    if not transfer_posted:
        return "the window's settlement did not move this obligation's tokens"
    return None


class _BackingBroken(Exception):
    def __init__(self, currency: str, problem: str) -> None:
        super().__init__(problem)
        self.currency = currency


class TokenActivities:
    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._sessions = session_factory

    @activity.defn(name="mint_token")
    async def mint_token(self, data: MintInput) -> MintResult:
        try:
            async with self._sessions() as session, session.begin():
                result, created = await self._mint(session, data)
        except _BackingBroken as broken:
            # Tier a of the account monitor: the mint rolled back; stop minting the
            # currency and let this payment wait (retrying) with the others.
            async with self._sessions() as session, session.begin():
                await reconciliation.open_breaker(session, broken.currency, str(broken))
            raise reconciliation.breaker_open_error(broken.currency) from None
        if created:
            metrics.tokens_minted.labels(result.currency).inc()
            metrics.tokens_minted_amount.labels(result.currency).inc(float(result.amount))
            metrics.payments_final.labels(PaymentStatus.COMPLETED.value).inc()
        return result

    async def _mint(self, session: AsyncSession, data: MintInput) -> tuple[MintResult, bool]:
        # The row lock serialises concurrent mints of one obligation; the unique
        # index on tokens.obligation_id stays the last word.
        obligation = await session.scalar(
            select(Obligation).where(Obligation.id == data.obligation_id).with_for_update()
        )
        if obligation is None:
            raise mint_refused(f"obligation {data.obligation_id} does not exist")
        existing = await _token_of(session, obligation.id)
        if existing is not None:
            return existing, False
        if await reconciliation.breaker_is_open(session, obligation.currency):
            raise reconciliation.breaker_open_error(obligation.currency)
        if obligation.settlement_mode == "NET":
            result = await self._mint_net(session, obligation)
        else:
            result = await self._mint_gross(session, obligation)
        if (problem := await reconciliation.supply_within_fiat(session, obligation.currency)) is not None:
            raise _BackingBroken(obligation.currency, problem)
        await session.execute(
            update(Payment)
            .where(Payment.id == obligation.payment_id, Payment.status == PaymentStatus.SETTLED)
            .values(status=PaymentStatus.COMPLETED, updated_at=func.now())
        )
        return result, True

    async def _mint_gross(self, session: AsyncSession, obligation: Obligation) -> MintResult:
        notification = await _fiat_entry(session, obligation)
        fiat = (
            None
            if notification is None
            else FiatEvidence(
                entry_status=notification.entry_status,
                credit_debit=notification.credit_debit,
                reversal=notification.reversal,
                amount=notification.amount,
                currency=notification.currency,
                outcome=notification.outcome,
            )
        )
        if (refusal := mint_refusal(obligation, fiat)) is not None:
            raise mint_refused(refusal)
        assert notification is not None
        return await self._post(session, obligation, notification)

    async def _mint_net(self, session: AsyncSession, obligation: Obligation) -> MintResult:
        """Net: the window's settlement already moved the tokens (one transaction for
        the whole window, backed by its booked fundings); the token records that
        transfer for this obligation."""
        window_status = await session.scalar(
            select(ClearingWindow.status).where(ClearingWindow.id == obligation.clearing_window_id)
        )
        transfer_id = await session.scalar(
            select(LedgerTransfer.id).where(LedgerTransfer.idempotency_key == f"obligation:{obligation.id}")
        )
        if (refusal := net_mint_refusal(obligation, window_status, transfer_id is not None)) is not None:
            raise mint_refused(refusal)
        assert transfer_id is not None
        return await _insert_token(session, obligation, transfer_id)

    async def _post(
        self, session: AsyncSession, obligation: Obligation, notification: BankNotification
    ) -> MintResult:
        amount, currency = obligation.amount, obligation.currency
        payer_fiat = await ledger.account_id(session, obligation.payer_id, currency, "fiat")
        payer_token = await ledger.account_id(session, obligation.payer_id, currency, "token")
        payee_token = await ledger.account_id(session, obligation.payee_id, currency, "token")
        await ledger.post_transfer(
            session,
            idempotency_key=f"fiat-booked:{notification.id}",
            debit_account_id=payer_fiat,
            credit_account_id=payer_token,
            amount=amount,
            currency=currency,
            kind="fiat_booked",
            notification_id=notification.id,
        )
        transfer_id = await ledger.post_transfer(
            session,
            idempotency_key=f"obligation:{obligation.id}",
            debit_account_id=payer_token,
            credit_account_id=payee_token,
            amount=amount,
            currency=currency,
            kind="obligation",
            obligation_id=obligation.id,
        )
        return await _insert_token(session, obligation, transfer_id)


async def _token_of(session: AsyncSession, obligation_id) -> MintResult | None:
    token = await session.scalar(select(Token).where(Token.obligation_id == obligation_id))
    if token is None:
        return None
    return MintResult(token_id=token.id, amount=token.amount, currency=token.currency)


async def _fiat_entry(session: AsyncSession, obligation: Obligation) -> BankNotification | None:
    if obligation.camt054_entry_reference is None:
        return None
    return await session.scalar(
        select(BankNotification).where(
            BankNotification.payment_id == obligation.payment_id,
            BankNotification.entry_reference == obligation.camt054_entry_reference,
            BankNotification.outcome == "MATCHED",
        )
    )


async def _insert_token(session: AsyncSession, obligation: Obligation, transfer_id) -> MintResult:
    token_id = await session.scalar(
        insert(Token)
        .values(
            obligation_id=obligation.id,
            payment_id=obligation.payment_id,
            owner_id=obligation.payee_id,
            amount=obligation.amount,
            currency=obligation.currency,
            transfer_id=transfer_id,
        )
        .returning(Token.id)
    )
    assert token_id is not None
    return MintResult(token_id=token_id, amount=obligation.amount, currency=obligation.currency)
