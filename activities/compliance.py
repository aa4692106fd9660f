"""Compliance engine: is this payment allowed onto the network at all?

Checks, in order: both agents are known, active participants; the accounts are valid
(IBAN against the registry via schwifty, or a domestic account number where the country
has no IBAN); the BICs are valid; currency and amount are within limits; neither party
is on the sanctions list. A failed check rejects the payment with an ISO reason code and
no obligation is ever created. Screening fails closed: if the list cannot be loaded the
activity raises a retryable error and the payment waits; it never passes unscreened.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from deltran.config import Settings
from deltran.db import payment_rows
from deltran.db.payment_rows import agents_of, reject
from deltran.db.tables import ComplianceResult, Payment, table_of
from deltran.domain.compliance.checks import Rejection, static_checks
from deltran.domain.compliance.screening import SanctionsList, SanctionsListError
from deltran.observability import metrics
from deltran.reason_codes import ReasonCode
from deltran.shared import ComplianceOutcome
from deltran.temporal.errors import payment_not_found
from deltran.vocabulary import ParticipantStatus, PaymentStatus

log = logging.getLogger(__name__)


# Built once, values bound at execution (see deltran/db/payment_rows.py).
_STORED = select(ComplianceResult).where(ComplianceResult.payment_id == bindparam("payment_id"))
_RESULTS = table_of(ComplianceResult)
_RECORD = insert(_RESULTS).on_conflict_do_nothing(index_elements=[_RESULTS.c.payment_id])


class SanctionsListCache:
    """Loads the list once and again only when the file changes on disk."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._loaded: tuple[float, SanctionsList] | None = None

    def get(self) -> SanctionsList:
        try:
            mtime = self._path.stat().st_mtime
        except OSError as exc:
            raise SanctionsListError(f"sanctions list {self._path} unreadable: {exc}") from exc
        if self._loaded is None or self._loaded[0] != mtime:
            self._loaded = (mtime, SanctionsList.load(self._path))
        return self._loaded[1]


class ComplianceActivities:
    def __init__(self, session_factory: async_sessionmaker, settings: Settings) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._sanctions = SanctionsListCache(settings.sanctions_list_path)

    @activity.defn(name="screen_payment")
    async def screen_payment(self, payment_id: uuid.UUID) -> ComplianceOutcome:
        """Screen once; a retry after a committed screening returns the stored outcome."""
        async with self._sessions() as session, session.begin():
            # Locked: two attempts that overlap (a timed-out one still running) screen one
            # after the other, and the second returns what the first stored.
            payment = await payment_rows.lock(session, payment_id)
            if payment is None:
                raise payment_not_found(payment_id)
            stored = await session.scalar(_STORED, {"payment_id": payment_id})
            if stored is not None:
                return ComplianceOutcome(passed=stored.passed, reason_code=stored.reason_code, reason=stored.reason)
            rejection, details = await self._evaluate(session, payment)
            await self._record(session, payment, rejection, details)
        if rejection is not None:
            metrics.payments_final.labels(PaymentStatus.REJECTED.value).inc()
        if rejection is None:
            return ComplianceOutcome(passed=True)
        return ComplianceOutcome(passed=False, reason_code=rejection.code, reason=rejection.reason)

    async def _evaluate(self, session: AsyncSession, payment: Payment) -> tuple[Rejection | None, dict]:
        if (rejection := static_checks(payment, self._settings)) is not None:
            return rejection, {}
        if (rejection := await self._participants(session, payment)) is not None:
            return rejection, {}
        try:
            sanctions = self._sanctions.get()
        except SanctionsListError as exc:
            # Fail closed: the payment waits (retries) until the list loads again.
            log.error("sanctions list unavailable: %s", exc)
            raise ApplicationError(f"sanctions screening unavailable: {exc}") from exc
        threshold = self._settings.sanctions_threshold
        for party, name in (("debtor", payment.debtor_name), ("creditor", payment.creditor_name)):
            hit = sanctions.screen(name, threshold)
            if hit is not None:
                details = {
                    "party": party,
                    "entry_id": hit.entry_id,
                    "listed_name": hit.listed_name,
                    "score": round(hit.score, 2),
                    "threshold": threshold,
                }
                reason = (
                    f"{party} name matches sanctions list entry {hit.entry_id}"
                    f" ({hit.listed_name!r}, score {hit.score:.1f})"
                )
                return Rejection(ReasonCode.REGULATORY_REASON, reason), details
        return None, {"sanctions_entries_screened": len(sanctions.entries)}

    async def _participants(self, session: AsyncSession, payment: Payment) -> Rejection | None:
        status = {bic: p.status for bic, p in (await agents_of(session, payment)).items()}
        for bic, code, role in (
            (payment.debtor_agent_bic, ReasonCode.DEBTOR_BANK_INVALID, "debtor agent"),
            (payment.creditor_agent_bic, ReasonCode.CREDITOR_BANK_INVALID, "creditor agent"),
        ):
            if bic not in status:
                return Rejection(code, f"{role} {bic} is not a DelTran participant")
            if status[bic] != ParticipantStatus.ACTIVE:
                return Rejection(ReasonCode.TRANSACTION_FORBIDDEN, f"{role} {bic} is {status[bic].lower()}")
        return None

    async def _record(
        self, session: AsyncSession, payment: Payment, rejection: Rejection | None, details: dict
    ) -> None:
        await session.execute(
            _RECORD,
            {
                "payment_id": payment.id,
                "passed": rejection is None,
                "reason_code": rejection.code if rejection else None,
                "reason": rejection.reason if rejection else None,
                "details": details,
            },
        )
        if rejection is not None:
            await reject(session, payment.id, rejection.code, rejection.reason)
