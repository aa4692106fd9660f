"""FX settlement engine: a cross-currency payment's two legs settle together or not at all
(payment versus payment).

A cross-currency payment has two obligations (activities/obligations.py): its SOURCE leg,
debtor agent → FX provider in the source currency, and its TARGET leg, provider →
creditor agent in the target currency. Neither payee ever holds its leg unless the other
payee holds its own:

- GROSS: nothing moves until both legs' fiat is booked (a camt.054 credit carrying the
  payment's reference in each leg's currency: the debtor agent's and the provider's).
  Then one transaction mints both bookings, moves both legs and mints both tokens.
- NET: each leg nets in its own currency's window, whose settlement moves the leg's
  tokens from its payer into the payee's escrow account, not its token account (netting
  gives the payee no credit for it either, so nothing it owes in that window can depend
  on it). When both legs have settled so, one transaction releases both escrows to their
  payees and mints both tokens.
- If the payment's deadline passes first (a leg unbooked, unfunded or rolled out of its
  window), one transaction releases every leg still pending, gives every leg in escrow
  back to its payer (UNWOUND: its payer holds the tokens it funded, redeemable 1:1), and
  expires the payment; booked fiat not minted is refunded to the leg's payer. A leg whose
  window has closed but not settled is counted by netting, so the expiry waits for that
  window to settle (into escrow, then unwound) or roll it (then released).

Each transaction runs under the payment's row lock, which the camt.054 intake, the
recall and expiry take too, so the outcome is one decision: COMPLETED with both legs paid,
or EXPIRED/CANCELLED with no leg paid.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.tokens.minting import insert_token, minting_transaction
from deltran import cancellations, events, ledger, reconciliation
from deltran.db import payment_rows
from deltran.db.tables import Account, BankNotification, ClearingWindow, LedgerTransfer, Obligation, Payment, Token
from deltran.observability import metrics
from deltran.reason_codes import ReasonCode
from deltran.shared import FxOutcome
from deltran.temporal.errors import breaker_open_error, payment_not_found
from deltran.vocabulary import (
    SETTLED_WINDOW_STATUSES,
    AccountKind,
    EntryOutcome,
    EventType,
    ObligationLeg,
    ObligationStatus,
    PaymentStatus,
    SettlementMode,
    TransferKind,
)

EXPIRED_REASON = "not funded before the settlement deadline"

# Metrics are counted after the commit (a transaction that rolls back counted nothing):
# the decisions append what to count here.
Counts = list[Callable[[], None]]


class FxSettlementActivities:
    def __init__(self, session_factory: async_sessionmaker) -> None:
        self._sessions = session_factory

    @activity.defn(name="settle_fx")
    async def settle_fx(self, payment_id: uuid.UUID) -> FxOutcome:
        """Settle what the legs' bookings or windows allow; complete the payment once both
        legs have. Idempotent: a retry, or a second signal, finds what was done."""
        return await self._decide(settle, payment_id)

    @activity.defn(name="expire_fx")
    async def expire_fx(self, payment_id: uuid.UUID) -> FxOutcome:
        """The deadline passed: expire the payment, no leg paid — unless both legs can
        settle now (then they do), or a leg is counted by a window still settling (then
        AWAITING_SETTLEMENT: wait for it)."""
        return await self._decide(expire, payment_id)

    async def _decide(self, decision, payment_id: uuid.UUID) -> FxOutcome:
        counts: Counts = []
        async with minting_transaction(self._sessions) as session:  # it mints: the backing is checked
            outcome = await decision(session, payment_id, counts)
        for count in counts:
            count()
        return outcome


# -- the decisions -------------------------------------------------------------------------


async def _locked(session: AsyncSession, payment_id: uuid.UUID) -> tuple[Payment, list[Obligation]]:
    payment = await payment_rows.lock(session, payment_id)
    if payment is None:
        raise payment_not_found(payment_id)
    # Read, not locked: only this payment's own steps change its legs' status, and the
    # payment's lock keeps them apart; a window's settlement (which rolls a leg, under its
    # window's lock) is met through that window's lock, taken after this one as the
    # single-currency expiry does — locking the legs first would deadlock with a fallback.
    legs = list(
        (
            await session.scalars(
                select(Obligation)
                .where(Obligation.payment_id == payment_id)
                .order_by(Obligation.leg)  # SOURCE, TARGET
                .execution_options(populate_existing=True)
            )
        ).all()
    )
    assert [leg.leg for leg in legs] == [ObligationLeg.SOURCE, ObligationLeg.TARGET], legs
    return payment, legs


async def _final(session: AsyncSession, payment: Payment, legs: Sequence[Obligation]) -> FxOutcome | None:
    """The outcome of a payment already decided (a retry, a late signal), else None."""
    status = PaymentStatus(payment.status)
    if status == PaymentStatus.AWAITING_SETTLEMENT:
        return None
    token_id = None
    if status == PaymentStatus.COMPLETED:
        token_id = await session.scalar(select(Token.id).where(Token.obligation_id == legs[1].id))
    return FxOutcome(status=status, token_id=token_id, settled_legs=_settled(legs))


def _settled(legs: Sequence[Obligation]) -> int:
    return sum(leg.status == ObligationStatus.SETTLED for leg in legs)


async def settle(session: AsyncSession, payment_id: uuid.UUID, counts: Counts) -> FxOutcome:
    payment, legs = await _locked(session, payment_id)
    if (final := await _final(session, payment, legs)) is not None:
        return final
    if legs[0].settlement_mode == SettlementMode.GROSS:
        bookings = await _bookings(session, payment_id, legs)
        if len(bookings) < len(legs):
            return FxOutcome(status=PaymentStatus.AWAITING_SETTLEMENT, settled_legs=0)
        for currency in sorted({leg.currency for leg in legs}):
            if await reconciliation.breaker_is_open(session, currency):
                raise breaker_open_error(currency)
        accounts = await _lock_accounts(session, legs)
        tokens = []
        for leg in legs:
            booking = bookings[leg.id]
            reference = booking.bank_reference or booking.entry_reference
            await _close(session, leg, reference, booking.entry_reference, counts)
            moved = await ledger.book_and_move(
                session,
                notification_id=booking.id,
                obligation_id=leg.id,
                payer_fiat=accounts[leg.payer_id, leg.currency, AccountKind.FIAT],
                payer_token=accounts[leg.payer_id, leg.currency, AccountKind.TOKEN],
                payee_token=accounts[leg.payee_id, leg.currency, AccountKind.TOKEN],
                amount=leg.amount,
                currency=leg.currency,
            )
            tokens.append(await _token(session, leg, moved, counts))
        await ledger.check_backing(session, sorted({leg.currency for leg in legs}))
        return await _complete(session, payment, legs, tokens, counts)
    await _record_escrowed(session, legs, counts)
    if _settled(legs) < len(legs):
        return FxOutcome(status=PaymentStatus.AWAITING_SETTLEMENT, settled_legs=_settled(legs))
    accounts = await _lock_accounts(session, legs)
    tokens = []
    for leg in legs:
        released = await _out_of_escrow(session, accounts, leg, to=leg.payee_id, kind=TransferKind.ESCROW_RELEASED)
        tokens.append(await _token(session, leg, released, counts))
    return await _complete(session, payment, legs, tokens, counts)


async def expire(session: AsyncSession, payment_id: uuid.UUID, counts: Counts) -> FxOutcome:
    payment, legs = await _locked(session, payment_id)
    if (final := await _final(session, payment, legs)) is not None:
        return final
    if legs[0].settlement_mode == SettlementMode.GROSS:
        if len(await _bookings(session, payment_id, legs)) == len(legs):
            # Both booked in time (a signal lost, or still on its way): they settle now.
            return await settle(session, payment_id, counts)
    else:
        # A window that settled a leg whose signal never came counts as if it had.
        await _record_escrowed(session, legs, counts)
        if _settled(legs) == len(legs):
            return await settle(session, payment_id, counts)
        waiting = FxOutcome(status=PaymentStatus.AWAITING_SETTLEMENT, settled_legs=_settled(legs))
        for leg in legs:
            # A pending leg in a closed window is counted by its netting: only that window
            # settles it (into escrow) or rolls it (into an open one). Read FOR SHARE: the
            # cut-off against a close, as for a payment in one currency.
            assert leg.clearing_window_id is not None  # a net leg
            if leg.status == ObligationStatus.PENDING and not await payment_rows.window_still_open(
                session, leg.clearing_window_id
            ):
                return waiting
    await unwind(session, legs, counts)
    expired = await session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.AWAITING_SETTLEMENT)
        .values(
            status=PaymentStatus.EXPIRED,
            rejection_code=ReasonCode.CLEARING_TIMEOUT,
            rejection_reason=EXPIRED_REASON,
            updated_at=func.now(),
        )
    )
    assert cast(CursorResult, expired).rowcount == 1  # locked, and AWAITING_SETTLEMENT above
    await events.payment_events(session, [payment_id], EventType.PAYMENT_EXPIRED)
    await cancellations.resolve_on_expiry(session, payment_id)
    await payment_rows.return_bookings(session, payment_id, PaymentStatus.EXPIRED)
    counts.append(metrics.payments_final.labels(PaymentStatus.EXPIRED.value).inc)
    return FxOutcome(status=PaymentStatus.EXPIRED, settled_legs=0)


async def _record_escrowed(session: AsyncSession, legs: Sequence[Obligation], counts: Counts) -> None:
    """NET: a pending leg whose window settled it sits in its payee's escrow: record it
    SETTLED (its window's settlement reference stands for both references)."""
    for leg in legs:
        if leg.status != ObligationStatus.PENDING:
            continue
        window = await session.get(ClearingWindow, leg.clearing_window_id, populate_existing=True)
        assert window is not None
        if window.status in SETTLED_WINDOW_STATUSES and await _transfer(session, ledger.obligation_key(leg.id)):
            assert window.settlement_reference is not None
            await _close(session, leg, window.settlement_reference, window.settlement_reference, counts)


async def unwind(session: AsyncSession, legs: Sequence[Obligation], counts: Counts) -> None:
    """No leg paid: every pending leg released, every leg in escrow back to its payer. The
    caller holds the payment's lock and has checked that no pending leg is in a closed
    window (none can then reach escrow later)."""
    escrowed = [leg for leg in legs if leg.status == ObligationStatus.SETTLED]
    accounts = await _lock_accounts(session, escrowed) if escrowed else {}
    for leg in legs:
        if leg.status == ObligationStatus.PENDING:
            leg.status, leg.released_at = ObligationStatus.RELEASED, func.now()
        elif leg.status == ObligationStatus.SETTLED:
            assert leg.escrowed, f"leg {leg.id} settled outside escrow, with its other leg unsettled"
            await _out_of_escrow(session, accounts, leg, to=leg.payer_id, kind=TransferKind.ESCROW_UNWOUND)
            leg.status = ObligationStatus.UNWOUND
            counts.append(metrics.fx_legs_unwound.labels(leg.currency).inc)
    await session.flush()


# -- the parts -----------------------------------------------------------------------------


async def _bookings(
    session: AsyncSession, payment_id: uuid.UUID, legs: Sequence[Obligation]
) -> dict[uuid.UUID, BankNotification]:
    """Each leg's matched booking, found by its currency (one per payment and currency)."""
    rows = (
        await session.scalars(
            select(BankNotification).where(
                BankNotification.payment_id == payment_id, BankNotification.outcome == EntryOutcome.MATCHED
            )
        )
    ).all()
    by_currency = {row.currency: row for row in rows}
    return {leg.id: by_currency[leg.currency] for leg in legs if leg.currency in by_currency}


async def _out_of_escrow(
    session: AsyncSession, accounts: Accounts, leg: Obligation, *, to: uuid.UUID, kind: TransferKind
) -> uuid.UUID:
    """escrow[payee] → token[to]: the leg paid to its payee (released) or back to its payer
    (unwound), once either way (one key per leg and kind)."""
    key = ledger.escrow_release_key if kind is TransferKind.ESCROW_RELEASED else ledger.escrow_unwind_key
    return await ledger.post_transfer(
        session,
        idempotency_key=key(leg.id),
        debit_account_id=accounts[leg.payee_id, leg.currency, AccountKind.ESCROW],
        credit_account_id=accounts[to, leg.currency, AccountKind.TOKEN],
        amount=leg.amount,
        currency=leg.currency,
        kind=kind,
        obligation_id=leg.id,
    )


async def _transfer(session: AsyncSession, key: str) -> bool:
    return await session.scalar(select(LedgerTransfer.id).where(LedgerTransfer.idempotency_key == key)) is not None


async def _close(session: AsyncSession, leg: Obligation, bank_ref: str, entry_ref: str, counts: Counts) -> None:
    leg.status = ObligationStatus.SETTLED
    leg.settled_at = func.now()
    leg.bank_confirmation_reference = bank_ref
    leg.camt054_entry_reference = entry_ref
    await session.flush()
    counts.append(metrics.settlements.labels(leg.currency, leg.settlement_mode).inc)


Accounts = dict[tuple[uuid.UUID, str, str], uuid.UUID]  # (participant, currency, kind) → account


async def _lock_accounts(session: AsyncSession, legs: Sequence[Obligation]) -> Accounts:
    """The accounts of the legs' parties in the legs' currencies, locked in id order in one
    statement (as every posting path locks its accounts, so a window settlement or a mint
    never deadlocks with this). FOR NO KEY UPDATE, as the mints take them."""
    parties = {p for leg in legs for p in (leg.payer_id, leg.payee_id)}
    rows = (
        await session.execute(
            select(Account.id, Account.participant_id, Account.currency, Account.kind)
            .where(Account.participant_id.in_(parties), Account.currency.in_({leg.currency for leg in legs}))
            .order_by(Account.id)
            .with_for_update(key_share=True)
        )
    ).all()
    return {(r.participant_id, r.currency, r.kind): r.id for r in rows}


async def _token(session: AsyncSession, leg: Obligation, transfer_id: uuid.UUID, counts: Counts) -> uuid.UUID:
    token_id = (await insert_token(session, leg, transfer_id)).token_id
    counts.append(metrics.tokens_minted.labels(leg.currency).inc)
    counts.append(functools.partial(metrics.tokens_minted_amount.labels(leg.currency).inc, float(leg.amount)))
    return token_id


async def _complete(
    session: AsyncSession, payment: Payment, legs: Sequence[Obligation], tokens: list[uuid.UUID], counts: Counts
) -> FxOutcome:
    await session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status == PaymentStatus.AWAITING_SETTLEMENT)
        .values(status=PaymentStatus.COMPLETED, updated_at=func.now())
    )
    await events.payment_events(
        session, [payment.id], EventType.PAYMENT_SETTLED, EventType.PAYMENT_COMPLETED, EventType.PAYMENT_CREDITED
    )
    counts.append(metrics.payments_final.labels(PaymentStatus.COMPLETED.value).inc)
    for leg in legs:
        counts.append(functools.partial(metrics.fx_settled_amount.labels(leg.currency, leg.leg).inc, float(leg.amount)))
    return FxOutcome(status=PaymentStatus.COMPLETED, token_id=tokens[-1], settled_legs=len(legs))
