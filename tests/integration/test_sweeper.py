"""A payment recorded while Temporal was down, or whose start the API never made, gets its
workflow from the worker's sweeper, once, even if the bank never resubmits; a camt.054
booked before the workflow exists reaches it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text

from deltran.db.tables import BankNotification, Payment
from deltran.identity import payment_id_for, workflow_id_for
from deltran.intake.camt054 import receive_camt054, signal_unsent
from deltran.intake.payments import WorkflowStarts, submit_payments
from deltran.iso20022.camt054 import parse_camt054
from tests.support.payments import auth, camt054_for, new_payment, payment_body, screening_row, wait_for_status
from tests.support.visibility import listed
from worker import sweeper
from worker.sweeper import start_orphans


def _orphan(e2e: str, amount: str = "42.00") -> Payment:
    """A payment row committed five minutes ago whose workflow was never started."""
    return screening_row(
        e2e,
        amount,
        workflow_id_for("EBILAEAD", e2e),
        id=payment_id_for("EBILAEAD", e2e),
        created_at=datetime.now(UTC) - timedelta(minutes=5),
    )


async def test_an_orphaned_payment_gets_exactly_one_workflow(
    http, credentials, sessions, settings, temporal_env, worker
):
    e2e = f"ORPH-{uuid.uuid4().hex[:12]}"
    payment_id, workflow_id = payment_id_for("EBILAEAD", e2e), workflow_id_for("EBILAEAD", e2e)
    async with sessions() as session, session.begin():
        session.add(_orphan(e2e))
    assert await start_orphans(temporal_env.client, sessions, settings) >= 1
    await wait_for_status(http, str(payment_id), auth(credentials["banks"]["EBILAEAD"]), {"AWAITING_SETTLEMENT"})
    await start_orphans(temporal_env.client, sessions, settings)  # again: finds it, starts nothing
    runs = await listed(temporal_env.client, f"WorkflowId = '{workflow_id}'")
    assert len(runs) == 1


async def test_every_orphan_is_started_however_many_wait_before_it(
    http, credentials, sessions, settings, temporal_env, worker, monkeypatch
):
    """Pages of two: the orphans behind the first page are started in the same round."""
    monkeypatch.setattr(sweeper, "BATCH", 2)
    e2es = [f"ORPHS-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    async with sessions() as session, session.begin():
        session.add_all([_orphan(e2e, "41.00") for e2e in e2es])
    assert await start_orphans(temporal_env.client, sessions, settings) >= 5
    bank = auth(credentials["banks"]["EBILAEAD"])
    await asyncio.gather(
        *(wait_for_status(http, str(payment_id_for("EBILAEAD", e2e)), bank, {"AWAITING_SETTLEMENT"}) for e2e in e2es)
    )


async def test_a_booking_whose_signal_never_went_out_is_signalled(
    http, credentials, sessions, settings, temporal_env, worker
):
    bank = auth(credentials["banks"]["EBILAEAD"])
    e2e = f"UNSENT-{uuid.uuid4().hex[:12]}"
    payment_id = (await http.post("/v1/payments", json=payment_body(e2e, amount="43.00"), headers=bank)).json()[
        "payment_id"
    ]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    # Stored MATCHED as the intake would, but the API stopped before signalling.
    async with sessions() as session, session.begin():
        message = await session.scalar(
            text(
                "INSERT INTO camt054_messages (id, message_id, body_sha256, body)"
                " VALUES (gen_random_uuid(), 'UNSENT', '0', '')"
                " RETURNING id"
            )
        )
        await session.execute(
            BankNotification.__table__.insert().values(
                message_row_id=message,
                account="DELTRAN-NOSTRO",
                entry_reference=f"U-{e2e}",
                tx_index=0,
                end_to_end_id=e2e,
                amount=Decimal("43.00"),
                currency="AED",
                credit_debit="CRDT",
                entry_status="BOOK",
                outcome="MATCHED",
                payment_id=uuid.UUID(payment_id),
                received_at=datetime.now(UTC) - timedelta(minutes=5),
            )
        )
    async with sessions() as session:
        assert await signal_unsent(session, temporal_env.client, timedelta(seconds=30)) >= 1
    await wait_for_status(http, payment_id, bank, {"COMPLETED"})
    async with sessions() as session:
        entry = await session.scalar(select(BankNotification).where(BankNotification.entry_reference == f"U-{e2e}"))
    assert entry.signalled_at is not None  # the next round leaves it alone


class _StartsLater(WorkflowStarts):
    """The API's starts, each a second after the answer: the window in which a camt.054
    can arrive before its payment's workflow exists."""

    def start(self, starts: list) -> None:
        super().start([_after(1.0, start) for start in starts])


class _StartsNever(WorkflowStarts):
    """The API stopped between its 202 and the start."""

    def start(self, starts: list) -> None:
        for start in starts:
            start.close()


async def _after(delay_s: float, start) -> None:
    await asyncio.sleep(delay_s)
    await start


async def _accept_then_book(
    sessions, settings, temporal_env, starts: WorkflowStarts, e2e: str, start_wait_s: float = 5.0
):
    async with sessions() as session:
        [intake] = await submit_payments(
            session,
            temporal_env.client,
            settings,
            [new_payment(e2e, "44.00", urgent=True)],
            actor="test",
            starts=starts,
        )
    body = camt054_for(e2e, "44.00", entry_reference=f"E-{e2e}")
    async with sessions() as session:
        [entry] = await receive_camt054(
            session, temporal_env.client, parse_camt054(body), body, actor="test", start_wait_s=start_wait_s
        )
    return intake, entry


async def test_a_booking_posted_before_its_workflow_started_reaches_it(
    http, credentials, sessions, settings, temporal_env, worker
):
    e2e = f"EARLY-{uuid.uuid4().hex[:12]}"
    # The intake keeps trying while the start is due (a second late here): given 20 s, not
    # the default 5, as a loaded test machine once took longer than that to start it, and
    # the sweeper's later round (another path, tested below) would have had to deliver it.
    intake, entry = await _accept_then_book(sessions, settings, temporal_env, _StartsLater(), e2e, start_wait_s=20)
    assert (entry.outcome, entry.duplicate) == ("MATCHED", False)
    async with sessions() as session:
        stored = await session.scalar(select(BankNotification).where(BankNotification.entry_reference == f"E-{e2e}"))
    assert stored.signalled_at is not None  # delivered by the intake itself, once the workflow existed
    await wait_for_status(http, str(intake.payment_id), auth(credentials["banks"]["EBILAEAD"]), {"COMPLETED"})


async def test_a_booking_for_a_payment_whose_start_never_came_is_signalled_by_the_sweeper(
    http, credentials, sessions, settings, temporal_env, worker
):
    e2e = f"NOSTART-{uuid.uuid4().hex[:12]}"
    intake, entry = await _accept_then_book(sessions, settings, temporal_env, _StartsNever(), e2e, start_wait_s=0.3)
    assert entry.outcome == "MATCHED"
    async with sessions() as session:
        stored = await session.scalar(select(BankNotification).where(BankNotification.entry_reference == f"E-{e2e}"))
        payment = await session.get(Payment, intake.payment_id)
    # Booked, not signalled (no workflow to signal), and the payment waits in SCREENING.
    assert stored.signalled_at is None and payment.status == "SCREENING"
    assert await start_orphans(temporal_env.client, sessions, settings, grace=timedelta(0)) >= 1
    async with sessions() as session:
        assert await signal_unsent(session, temporal_env.client, timedelta(0)) >= 1
    await wait_for_status(http, str(intake.payment_id), auth(credentials["banks"]["EBILAEAD"]), {"COMPLETED"})


async def test_entries_that_cannot_be_signalled_yet_never_hide_the_ones_behind_them(
    http, credentials, sessions, settings, temporal_env, worker
):
    """Pages of one: two older entries whose payments have no workflow (and are past
    SCREENING, so no sweeper starts one) come first; the entry behind them is signalled."""
    blockers = []
    for _ in range(2):
        e2e = f"BLOCK-{uuid.uuid4().hex[:12]}"
        intake, _ = await _accept_then_book(sessions, settings, temporal_env, _StartsNever(), e2e, start_wait_s=0.1)
        blockers.append(intake.payment_id)
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE payments SET status = 'AWAITING_SETTLEMENT' WHERE id = ANY(:ids)"), {"ids": blockers}
        )
    e2e = f"BEHIND-{uuid.uuid4().hex[:12]}"
    intake, _ = await _accept_then_book(sessions, settings, temporal_env, _StartsNever(), e2e, start_wait_s=0.1)
    assert await start_orphans(temporal_env.client, sessions, settings, grace=timedelta(0)) >= 1
    async with sessions() as session:
        assert await signal_unsent(session, temporal_env.client, timedelta(0), page=1) >= 1
    await wait_for_status(http, str(intake.payment_id), auth(credentials["banks"]["EBILAEAD"]), {"COMPLETED"})
    async with sessions() as session:
        unsent = await session.scalar(
            select(func.count())
            .select_from(BankNotification)
            .where(BankNotification.payment_id.in_(blockers), BankNotification.signalled_at.is_(None))
        )
    assert unsent == 2  # still waiting for a workflow: left for the next round, not lost
