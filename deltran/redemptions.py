"""Redemptions: a bank turns tokens back into fiat, with the settlement agent paying out.

Each step is one transaction and a ledger posting keyed by the redemption, so a retried
step changes nothing:
- `reserve` (at the request): token[bank] → reserved[bank]. The tokens are no longer
  spendable (a posting that would take the token account below zero is refused, so a
  bank without the tokens gets a 422 and nothing is stored) but still count in supply.
- `instruct`: the payout is listed for the settlement agent (GET /v1/payouts).
- the agent's booked DBIT camt.054 whose EndToEndId is the reference is matched by the
  intake (deltran/intake/camt054.py), which links it here under the redemption's lock;
- `burn`: reserved[bank] → paid_out[bank]: supply and backing (booked fiat less paid
  out) fall together, in the transaction that marks it COMPLETED;
- `release` (refused by the agent, or its deadline passed with no payout booked):
  reserved[bank] → token[bank]. Under the same lock as the matching, so a payout is
  either booked (and burned) or released, never both.
Supply = booked fiat less paid out holds after every step; the backing rule is checked
in each transaction that moves supply.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from deltran import events, ledger
from deltran.config import Settings
from deltran.db.tables import BankNotification, Redemption
from deltran.domain.settlement import PAYOUT_REFERENCE_PREFIX
from deltran.errors import Conflict, NotFound, Refused
from deltran.money import format_amount
from deltran.shared import RedemptionInput
from deltran.temporal.contract import RedemptionContract
from deltran.vocabulary import AccountKind, EventType, RedemptionStatus, TransferKind

REFERENCE_PREFIX = PAYOUT_REFERENCE_PREFIX


@dataclass(frozen=True)
class NewRedemption:
    currency: str
    amount: Decimal
    payout_iban: str | None
    payout_account: str | None
    idempotency_key: str

    def fingerprint(self) -> str:
        content = [self.currency, str(self.amount.normalize()), self.payout_iban, self.payout_account]
        return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def reference_for(redemption_id: uuid.UUID) -> str:
    """The payout's reference: the EndToEndId of the DBIT camt.054 that books it (≤ 35)."""
    return REFERENCE_PREFIX + redemption_id.hex.upper()[:28]


def workflow_id_for(redemption_id: uuid.UUID) -> str:
    return f"redemption-{redemption_id}"


def _data(r: Redemption) -> dict:
    return {
        "redemption_id": str(r.id),
        "reference": r.reference,
        "status": r.status,
        "currency": r.currency,
        "amount": format_amount(r.amount, r.currency),
        "release_reason": r.release_reason,
    }


async def _accounts(session: AsyncSession, r: Redemption) -> dict[str, uuid.UUID]:
    await ledger.ensure_accounts(session, [r.participant_id], r.currency, kinds=list(AccountKind))
    return {
        kind: await ledger.account_id(session, r.participant_id, r.currency, kind)
        for kind in (AccountKind.TOKEN, AccountKind.RESERVED, AccountKind.PAID_OUT)
    }


async def reserve(
    session: AsyncSession, participant_id: uuid.UUID, new: NewRedemption, deadline_s: int
) -> tuple[Redemption, bool]:
    """Record the redemption and reserve its tokens, in the caller's transaction; the
    same Idempotency-Key again returns the one recorded (created False), with other
    content a Conflict. Refused (422) without the tokens: the caller rolls back."""
    redemption_id = uuid.uuid4()
    inserted = await session.scalar(
        insert(Redemption)
        .values(
            id=redemption_id,
            participant_id=participant_id,
            idempotency_key=new.idempotency_key,
            fingerprint=new.fingerprint(),
            reference=reference_for(redemption_id),
            currency=new.currency,
            amount=new.amount,
            payout_iban=new.payout_iban,
            payout_account=new.payout_account,
            status=RedemptionStatus.RESERVED,
            deadline=func.now() + timedelta(seconds=deadline_s),
            workflow_id=workflow_id_for(redemption_id),
        )
        .on_conflict_do_nothing(index_elements=[Redemption.participant_id, Redemption.idempotency_key])
        .returning(Redemption.id)
    )
    if inserted is None:
        existing = await session.scalar(
            select(Redemption).where(
                Redemption.participant_id == participant_id, Redemption.idempotency_key == new.idempotency_key
            )
        )
        assert existing is not None
        if existing.fingerprint != new.fingerprint():
            raise Conflict(
                "this Idempotency-Key was already used for a redemption with other content",
                kind="idempotency-key-reused",
                errors=[{"field": "Idempotency-Key", "message": "already used with other content"}],
            )
        return existing, False
    redemption = await session.get(Redemption, redemption_id)
    assert redemption is not None
    accounts = await _accounts(session, redemption)
    held = await ledger.balance(session, accounts[AccountKind.TOKEN])
    insufficient = Refused(
        f"{format_amount(new.amount, new.currency)} {new.currency} exceeds the"
        f" {format_amount(held, new.currency)} {new.currency} of tokens this bank can spend; nothing was reserved",
        kind="insufficient-tokens",
        errors=[{"field": "amount", "message": "more than the bank's spendable tokens"}],
    )
    if held < new.amount:
        raise insufficient
    try:
        await _move(session, redemption, "reserve", AccountKind.TOKEN, AccountKind.RESERVED, TransferKind.RESERVED)
    except ledger.LedgerRefused as refused:  # spent concurrently: the CHECK had the last word
        if refused.refusal is not ledger.Refusal.BALANCE_BELOW_ZERO:
            raise
        raise insufficient from None
    await events.bank_event(session, participant_id, EventType.REDEMPTION_RESERVED, _data(redemption))
    return redemption, True


async def locked(session: AsyncSession, redemption_id: uuid.UUID) -> Redemption:
    redemption = await session.scalar(select(Redemption).where(Redemption.id == redemption_id).with_for_update())
    if redemption is None:
        raise NotFound(f"redemption {redemption_id} not found", kind="redemption-not-found")
    return redemption


async def _move(
    session: AsyncSession, r: Redemption, step: str, debit: AccountKind, credit: AccountKind, kind: TransferKind
) -> None:
    """The step's one posting between two of the bank's accounts, keyed by the step."""
    accounts = await _accounts(session, r)
    await ledger.post_transfer(
        session,
        idempotency_key=f"redemption-{step}:{r.id}",
        debit_account_id=accounts[debit],
        credit_account_id=accounts[credit],
        amount=r.amount,
        currency=r.currency,
        kind=kind,
        notification_id=r.notification_id,
        redemption_id=r.id,
    )


async def _become(session: AsyncSession, r: Redemption, status: RedemptionStatus, told: EventType, **values) -> None:
    """Record the new status (and anything with it) and tell the bank."""
    r.status = status
    r.updated_at = func.now()
    for name, value in values.items():
        setattr(r, name, value)
    await session.flush()
    await session.refresh(r)
    await events.bank_event(session, r.participant_id, told, _data(r))


async def instruct(session: AsyncSession, redemption_id: uuid.UUID) -> Redemption:
    """RESERVED → PAYOUT_INSTRUCTED (once)."""
    redemption = await locked(session, redemption_id)
    if redemption.status == RedemptionStatus.RESERVED:
        await _become(session, redemption, RedemptionStatus.PAYOUT_INSTRUCTED, EventType.REDEMPTION_PAYOUT_INSTRUCTED)
    return redemption


async def burn(session: AsyncSession, redemption_id: uuid.UUID) -> Redemption:
    """The payout is booked: burn the reserved tokens (once). Only with its matched
    DBIT entry: a redemption without one is not burned."""
    redemption = await locked(session, redemption_id)
    if redemption.status == RedemptionStatus.COMPLETED:
        return redemption
    if redemption.notification_id is None or redemption.status != RedemptionStatus.PAYOUT_INSTRUCTED:
        raise RuntimeError(f"redemption {redemption_id} is {redemption.status} without a booked payout: not burned")
    # Not gated on the backing check: a burn lowers supply and backing alike, and the fiat
    # has already left — refusing it would only leave the books further apart.
    await _move(session, redemption, "burn", AccountKind.RESERVED, AccountKind.PAID_OUT, TransferKind.REDEEMED)
    await _become(session, redemption, RedemptionStatus.COMPLETED, EventType.REDEMPTION_COMPLETED)
    return redemption


async def release(session: AsyncSession, redemption_id: uuid.UUID, reason: str) -> Redemption:
    """Give the reserved tokens back (once) — unless the payout was booked meanwhile:
    then the redemption stays to be burned, and is returned unchanged."""
    redemption = await locked(session, redemption_id)
    if redemption.status not in (RedemptionStatus.RESERVED, RedemptionStatus.PAYOUT_INSTRUCTED):
        return redemption
    if redemption.notification_id is not None or await _payout_booked(session, redemption):
        # The money left (matched, or booked with another amount: an exception to settle
        # by hand): the tokens stay reserved, to burn — never back to the bank.
        return redemption
    await _move(session, redemption, "release", AccountKind.RESERVED, AccountKind.TOKEN, TransferKind.RELEASED)
    await _become(session, redemption, RedemptionStatus.RELEASED, EventType.REDEMPTION_RELEASED, release_reason=reason)
    return redemption


async def _payout_booked(session: AsyncSession, r: Redemption) -> bool:
    """Whether any booked debit names this payout, whatever its outcome."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    BankNotification.redemption_id == r.id,
                    BankNotification.credit_debit == "DBIT",
                    BankNotification.entry_status == "BOOK",
                    BankNotification.reversal.is_(False),
                )
            )
        )
    )


async def refuse_payout(session: AsyncSession, reference: str, reason: str) -> Redemption:
    """The settlement agent will not pay it out: released (a booked one cannot be refused)."""
    redemption = await session.scalar(select(Redemption).where(Redemption.reference == reference).with_for_update())
    if redemption is None:
        raise NotFound(f"no payout {reference}", kind="payout-not-found")
    if redemption.status == RedemptionStatus.RELEASED:
        return redemption  # refused (or timed out) before: the same answer
    if (
        redemption.notification_id is not None
        or redemption.status == RedemptionStatus.COMPLETED
        or await _payout_booked(session, redemption)
    ):
        raise Conflict(f"payout {reference} is already booked: it cannot be refused", kind="payout-booked")
    return await release(session, redemption.id, f"refused by the settlement agent: {reason}")


async def start_workflow(temporal: Client, settings: Settings, redemption: Redemption) -> None:
    """Start the redemption's workflow, or find it (one redemption, one workflow; a closed
    one is never started again). Raises RPCError if Temporal is down: the sweeper starts
    RESERVED redemptions left without one."""
    try:
        await temporal.start_workflow(
            RedemptionContract.run,
            RedemptionInput(
                redemption_id=redemption.id, deadline_s=settings.redemption_deadline_s, deadline=redemption.deadline
            ),
            id=redemption.workflow_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        pass
