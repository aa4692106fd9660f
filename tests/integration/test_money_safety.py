"""Money is never created, stranded or frozen: what a hostile bank, a careless
settlement agent and plain races did to the 1:1 rule and the clearing cycle, each
case replayed on the real servers.

Clearing cases run in USD and EUR after tests/integration/test_clearing.py; each
first closes the currency's open window to flush what earlier tests left in it, so
its own window holds only its own payments.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from activities.clearing import ensure_open_window, settle_window
from activities.compliance import ComplianceActivities
from activities.obligations import ObligationActivities
from deltran.db.tables import (
    Account,
    BankNotification,
    ClearingWindow,
    Event,
    FundingInstruction,
    LedgerTransfer,
    Participant,
    Payment,
    Refund,
    Token,
)
from deltran.errors import Refused
from deltran.intake.payments import submit_payments
from deltran.iso20022.camt054 import BookingSpec, build_camt054
from deltran.iso20022.pacs008 import Pacs008Spec, build_pacs008
from deltran.reconciliation import backing_by_currency, end_of_day_breaks
from deltran.shared import ExpireInput
from deltran.vocabulary import PaymentStatus
from tests.integration.test_clearing import submit_all, supply_and_fiat
from tests.support.payments import (
    AE_IBAN,
    auth,
    camt054_for,
    complete_gross_payment,
    new_payment,
    payment_body,
    screening_row,
    wait_for_status,
)
from worker.fail_fast import INVARIANT_VIOLATED, FailFastInterceptor

XML = {"Content-Type": "application/xml"}


def _agent(credentials) -> dict:
    return {**auth(credentials["settlement_agent"]), **XML}


async def _post_camt054(http, credentials, body: bytes):
    return await http.post("/v1/notifications/camt054", content=body, headers=_agent(credentials))


async def _entry(sessions, entry_reference: str) -> BankNotification:
    async with sessions() as session:
        return await session.scalar(select(BankNotification).where(BankNotification.entry_reference == entry_reference))


async def _screening_payment(
    sessions, *, currency: str = "AED", creditor_name: str = "Ganesh Textiles Pvt Ltd"
) -> Payment:
    """A payment recorded and still SCREENING, with no workflow: the steps under test
    are driven one by one."""
    e2e = f"MS-{uuid.uuid4().hex[:16]}"
    payment = screening_row(e2e, "1200.00", f"payment-test-{e2e}", currency=currency, creditor_name=creditor_name)
    async with sessions() as session, session.begin():
        session.add(payment)
    return payment


async def _book_early(http, credentials, payment: Payment) -> str:
    """The settlement agent's camt.054 for the payment, while it is still SCREENING."""
    reference = f"EARLY-{uuid.uuid4().hex[:12]}"
    response = await _post_camt054(
        http, credentials, camt054_for(payment.end_to_end_id, "1200.00", payment.currency, entry_reference=reference)
    )
    assert response.status_code == 200, response.text
    assert response.json()["entries"][0]["outcome"] == "MATCHED"
    return reference


async def _flush_window(http, credentials, sessions, currency: str) -> None:
    async with sessions() as session, session.begin():
        await ensure_open_window(session, currency)
    flushed = await http.post(f"/v1/clearing/windows/close?currency={currency}", headers=auth(credentials["admin"]))
    assert flushed.status_code == 202, flushed.text


# -- 1. tokens without fiat ---------------------------------------------------------------


def _split_entry(
    e2e: str, entry_total: str, parts: list[tuple[str, str]], reference: str, direction: str = "CRDT"
) -> bytes:
    """One Ntry of `entry_total` whose TxDtls are `parts` (amount, CdtDbtInd)."""
    body = camt054_for(e2e, entry_total, entry_reference=reference).decode()
    head, _, tail = body.partition("<NtryDtls>")
    _, _, tail = tail.partition("</NtryDtls>")
    head = head.replace("<CdtDbtInd>CRDT</CdtDbtInd>", f"<CdtDbtInd>{direction}</CdtDbtInd>", 1)
    details = "".join(
        f'<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs><Amt Ccy="AED">{amount}</Amt>'
        f"<CdtDbtInd>{indicator}</CdtDbtInd></TxDtls>"
        for amount, indicator in parts
    )
    return f"{head}<NtryDtls>{details}</NtryDtls>{tail}".encode()


@pytest.mark.parametrize(
    ("entry_total", "parts", "direction", "why"),
    [
        ("100000.00", [("100000.00", "CRDT"), ("100000.00", "CRDT")], "CRDT", "add up to 200000.00 AED"),
        ("100000.00", [("100000.00", "CRDT")], "DBIT", "is CRDT, the entry is DBIT"),
    ],
    ids=["details-exceed-entry", "debit-entry-credit-details"],
)
async def test_an_entry_whose_details_disagree_books_nothing(
    http, credentials, sessions, e2e_id, entry_total, parts, direction, why
):
    bank = auth(credentials["banks"]["EBILAEAD"])
    submitted = await http.post("/v1/payments", json=payment_body(e2e_id), headers=bank)
    payment_id = submitted.json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    reference = f"SPLIT-{uuid.uuid4().hex[:12]}"
    body = _split_entry(e2e_id, entry_total, parts, reference, direction)
    refused = await _post_camt054(http, credentials, body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["type"].endswith("invalid-camt054")
    assert any(why in e["message"] and reference in e["message"] for e in refused.json()["errors"]), refused.text
    assert await _entry(sessions, reference) is None
    state = (await http.get(f"/v1/payments/{payment_id}", headers=bank)).json()
    assert state["status"] == "AWAITING_SETTLEMENT" and state["token"] is None


# -- 2. a duplicate storm never rewrites a booking ---------------------------------------


async def test_duplicates_of_a_settled_booking_never_change_it(http, credentials, sessions, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    submitted = await http.post("/v1/payments", json=payment_body(e2e_id, amount="777.00"), headers=bank)
    payment_id = submitted.json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    reference = f"STORM-{uuid.uuid4().hex[:12]}"
    body = camt054_for(e2e_id, "777.00", entry_reference=reference)
    storm = await asyncio.gather(*(_post_camt054(http, credentials, body) for _ in range(20)))
    assert all(r.status_code == 200 for r in storm), [r.text for r in storm if r.status_code != 200]
    assert sum(not r.json()["entries"][0]["duplicate"] for r in storm) == 1
    await wait_for_status(http, payment_id, bank, {"COMPLETED"})

    # A duplicate that finds the match not yet marked signalled (the race of a storm),
    # signals the closed workflow and gets NOT_FOUND: the booking must stand.
    async with sessions() as session, session.begin():
        await session.execute(
            update(BankNotification).where(BankNotification.entry_reference == reference).values(signalled_at=None)
        )
    late = await asyncio.gather(*(_post_camt054(http, credentials, body) for _ in range(10)))
    assert all(r.status_code == 200 and r.json()["entries"][0]["outcome"] == "MATCHED" for r in late), late[0].text
    entry = await _entry(sessions, reference)
    assert (entry.outcome, entry.outcome_detail) == ("MATCHED", None) and entry.signalled_at is not None
    async with sessions() as session:
        minted = await session.scalar(
            select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.notification_id == entry.id)
        )
    assert minted == 1


async def test_one_camt054_booking_many_payments_signals_each_once(http, credentials, sessions, e2e_id):
    """The entries' signals go out together; an entry whose workflow has already closed,
    in the same message, still reports its stored outcome, and every one is marked."""
    bank = auth(credentials["banks"]["EBILAEAD"])
    e2es = [f"{e2e_id}-{i}" for i in range(12)]
    accepted = await asyncio.gather(
        *(
            http.post("/v1/payments", json={**payment_body(e, amount="120.00"), "urgent": True}, headers=bank)
            for e in e2es
        )
    )
    assert all(r.status_code == 202 for r in accepted), [r.text for r in accepted if r.status_code != 202]
    ids = [r.json()["payment_id"] for r in accepted]
    await asyncio.gather(*(wait_for_status(http, i, bank, {"AWAITING_SETTLEMENT"}) for i in ids))
    # A settled payment's entry whose signal looks unsent: its workflow has closed.
    closed_payment = uuid.UUID(await complete_gross_payment(http, credentials, "130.00", prefix=f"{e2e_id}-C"))
    async with sessions() as session, session.begin():
        closed_e2e = await session.scalar(select(Payment.end_to_end_id).where(Payment.id == closed_payment))
        closed_entry = await session.scalar(
            select(BankNotification)
            .join(Payment, Payment.id == BankNotification.payment_id)
            .where(Payment.id == closed_payment)
        )
        closed_entry.signalled_at = None
        closed_reference = closed_entry.entry_reference

    references = [f"MANY-{uuid.uuid4().hex[:12]}" for _ in e2es]
    specs = [
        BookingSpec(
            end_to_end_id=e, amount=Decimal("120.00"), currency="AED", entry_reference=r, bank_reference=f"BR-{r}"
        )
        for e, r in zip(e2es, references, strict=True)
    ]
    specs.append(
        BookingSpec(
            end_to_end_id=closed_e2e,
            amount=Decimal("130.00"),
            currency="AED",
            entry_reference=closed_reference,
            bank_reference=f"BR-{closed_reference}",
        )
    )
    posted = await _post_camt054(http, credentials, build_camt054(specs, message_id=f"MANY-{uuid.uuid4().hex[:12]}"))
    assert posted.status_code == 200, posted.text
    entries = posted.json()["entries"]
    assert [(e["outcome"], e["duplicate"]) for e in entries] == [("MATCHED", False)] * 12 + [("MATCHED", True)]
    await asyncio.gather(*(wait_for_status(http, i, bank, {"COMPLETED"}) for i in ids))
    async with sessions() as session:
        stored = (
            await session.scalars(
                select(BankNotification).where(BankNotification.entry_reference.in_([*references, closed_reference]))
            )
        ).all()
        tokens = await session.scalar(
            select(func.count()).select_from(Token).where(Token.payment_id.in_([uuid.UUID(i) for i in ids]))
        )
    assert len(stored) == 13 and all(e.signalled_at is not None and e.outcome == "MATCHED" for e in stored)
    assert tokens == 12


# -- 3. a bank paying itself --------------------------------------------------------------


async def test_a_bank_paying_itself_is_refused_at_intake(http, credentials, sessions, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    body = payment_body(e2e_id, creditor_bic="EBILAEADXXX")  # the same bank, spelt with its branch code
    refused = await http.post("/v1/payments", json=body, headers=bank)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "creditor.agent_bic"

    spec = Pacs008Spec(
        end_to_end_id=f"{e2e_id}-X",
        amount=Decimal("10.00"),
        currency="AED",
        debtor_name="Al Noor Trading LLC",
        debtor_agent_bic="EBILAEAD",
        debtor_iban=AE_IBAN,
        creditor_name="Al Noor Trading LLC",
        creditor_agent_bic="EBILAEAD",
        creditor_iban=AE_IBAN,
    )
    ok = Pacs008Spec(
        **{
            **spec.__dict__,
            "end_to_end_id": f"{e2e_id}-Y",
            "creditor_agent_bic": "SBININBB",
            "creditor_iban": None,
            "creditor_account": "30001234567",
        }
    )
    xml = build_pacs008([ok, spec], message_id=f"MSG-{uuid.uuid4().hex[:20]}", instructing_agent_bic="EBILAEAD")
    refused = await http.post("/v1/payments", content=xml, headers={**bank, **XML})
    assert refused.status_code == 422, refused.text
    assert [(e["field"], e["transaction"]) for e in refused.json()["errors"]] == [
        ("CdtTrfTxInf[1]/CdtrAgt/FinInstnId/BICFI", 1)
    ]
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.end_to_end_id.like(f"{e2e_id}%"))
        )
    assert stored == 0  # the whole message, its valid transaction too

    # And the database refuses one should anything get past the intake.
    payment = await _screening_payment(sessions)
    with pytest.raises(IntegrityError, match="ck_payments_distinct_agents"):
        async with sessions() as session, session.begin():
            await session.execute(update(Payment).where(Payment.id == payment.id).values(creditor_agent_bic="EBILAEAD"))


async def test_a_currency_deltran_knows_but_does_not_clear_is_refused_at_intake(http, credentials, sessions, e2e_id):
    """One currency table: GBP has its minor units in it but is not cleared, so the
    payment is a 422 at the door, not a 202 that screening then rejects."""
    bank = auth(credentials["banks"]["EBILAEAD"])
    refused = await http.post("/v1/payments", json=payment_body(e2e_id, currency="GBP", amount="10.00"), headers=bank)
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"].endswith("currency-not-cleared")
    assert refused.json()["errors"][0]["field"] == "currency"
    gbp = Pacs008Spec(
        end_to_end_id=f"{e2e_id}-GBP", amount=Decimal("10.00"), currency="GBP", debtor_name="Al Noor Trading LLC",
        debtor_agent_bic="EBILAEAD", debtor_iban=AE_IBAN, creditor_name="Ganesh Textiles Pvt Ltd",
        creditor_agent_bic="SBININBB", creditor_account="30001234567",
    )  # fmt: skip
    xml = build_pacs008([gbp], message_id=f"MSG-{uuid.uuid4().hex[:20]}", instructing_agent_bic="EBILAEAD")
    refused = await http.post("/v1/payments", content=xml, headers={**bank, **XML})
    assert refused.status_code == 422, refused.text
    assert [(e["field"], e["transaction"]) for e in refused.json()["errors"]] == [
        ("CdtTrfTxInf[0]/IntrBkSttlmAmt/@Ccy", 0)
    ]
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Payment).where(Payment.end_to_end_id.like(f"{e2e_id}%"))
        )
    assert stored == 0


async def test_a_payment_recorded_while_its_currency_was_cleared_is_still_found_on_resubmission(
    sessions, settings, temporal_env, e2e_id
):
    """Taking a currency off the cleared list refuses new payments in it, not the
    resubmission of one already recorded (which a 503 asks the bank to make)."""
    new = new_payment(e2e_id, "10.00", currency="GBP")
    idle_queue = settings.model_copy(update={"task_queue": f"no-worker-{uuid.uuid4().hex[:8]}"})
    with_gbp = idle_queue.model_copy(update={"supported_currencies": (*settings.supported_currencies, "GBP")})
    async with sessions() as session:
        [first] = await submit_payments(session, temporal_env.client, with_gbp, [new], actor="test")
    async with sessions() as session:
        [again] = await submit_payments(session, temporal_env.client, idle_queue, [new], actor="test")
        with pytest.raises(Refused) as refused:
            other = replace(new, end_to_end_id=f"{e2e_id}-2")
            await submit_payments(session, temporal_env.client, idle_queue, [other], actor="test")
    assert first.created and (again.payment_id, again.created) == (first.payment_id, False)
    assert refused.value.kind == "currency-not-cleared"


@activity.defn(name="never_succeeds")
async def _never_succeeds(attempts: list) -> None:
    raise AssertionError("an invariant that no retry can change")


@workflow.defn(name="FailFastProbe", sandboxed=False)
class _FailFastProbe:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            "never_succeeds",
            [],
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)),  # unlimited attempts
        )


async def test_a_step_that_can_never_succeed_fails_at_once_and_visibly(temporal_env):
    queue = f"fail-fast-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_env.client,
        task_queue=queue,
        workflows=[_FailFastProbe],
        activities=[_never_succeeds],
        interceptors=[FailFastInterceptor()],
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(
                temporal_env.client.execute_workflow(_FailFastProbe.run, id=f"probe-{queue}", task_queue=queue),
                timeout=30,
            )
    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == INVARIANT_VIOLATED and cause.cause.non_retryable
    history = await temporal_env.client.get_workflow_handle(f"probe-{queue}").fetch_history()
    started = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [1]


# -- 4. a window whose positions all net to zero -------------------------------------------


async def test_a_window_whose_positions_all_net_to_zero_settles_every_payment(http, credentials, sessions, worker):
    await _flush_window(http, credentials, sessions, "USD")
    payment_ids = await submit_all(
        http, credentials, [("CHASUS33", "CITIUS33", "250.00"), ("CITIUS33", "CHASUS33", "250.00")], "USD"
    )
    closed = await http.post("/v1/clearing/windows/close?currency=USD", headers=auth(credentials["admin"]))
    assert closed.status_code == 202, closed.text
    window = closed.json()
    assert window["obligations_count"] == 2 and window["instructions"] == []
    for payment_id, payer in zip(payment_ids, ("CHASUS33", "CITIUS33"), strict=True):
        done = await wait_for_status(http, payment_id, auth(credentials["banks"][payer]), {"COMPLETED"}, timeout_s=60)
        assert done["token"] is not None
    settled = (await http.get(f"/v1/clearing/windows/{window['id']}", headers=auth(credentials["admin"]))).json()
    assert settled["status"] == "SETTLED"


# -- 5. booked fiat is never stranded ------------------------------------------------------


async def test_fiat_booked_during_screening_settles_the_payment_gross(http, credentials, sessions, settings):
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "EUR")  # it would otherwise join this window, net
    payment = await _screening_payment(sessions, currency="EUR")
    reference = await _book_early(http, credentials, payment)
    routed = await ObligationActivities(sessions, settings).create_obligation(payment.id)
    assert routed.settlement_mode == "GROSS" and "already booked" in routed.routing_reason
    entry = await _entry(sessions, reference)
    assert entry.outcome == "MATCHED"  # and its payment settles on it


async def test_fiat_booked_for_a_payment_then_rejected_is_an_exception_to_return(http, credentials, sessions, settings):
    payment = await _screening_payment(sessions, creditor_name="Viktor Blacklistov")
    reference = await _book_early(http, credentials, payment)
    outcome = await ComplianceActivities(sessions, settings).screen_payment(payment.id)
    assert not outcome.passed
    entry = await _entry(sessions, reference)
    assert entry.outcome == "PAYMENT_NOT_AWAITING" and "REJECTED" in entry.outcome_detail
    async with sessions() as session:
        breaks = await end_of_day_breaks(session, settings)
    assert {(b["kind"], b["ref"]) for b in breaks} >= {("unmatched_entry", str(entry.id))}


async def test_a_booked_gross_payment_does_not_expire(http, credentials, sessions, settings):
    payment = await _screening_payment(sessions)  # AED: no window, gross
    reference = await _book_early(http, credentials, payment)
    obligations = ObligationActivities(sessions, settings)
    routed = await obligations.create_obligation(payment.id)
    expired = await obligations.expire_payment(ExpireInput(payment_id=payment.id, obligation_id=routed.obligation_id))
    assert expired is False  # its booking's signal settles it
    async with sessions() as session:
        assert (await session.get(Payment, payment.id)).status == PaymentStatus.AWAITING_SETTLEMENT
    assert (await _entry(sessions, reference)).outcome == "MATCHED"


async def test_a_funding_committing_at_the_cut_off_is_minted_never_stranded(http, credentials, sessions, temporal_env):
    await _flush_window(http, credentials, sessions, "EUR")
    await submit_all(http, credentials, [("DEUTDEFF", "BNPAFRPP", "300.00")], "EUR")
    closed = (await http.post("/v1/clearing/windows/close?currency=EUR", headers=auth(credentials["admin"]))).json()
    [instruction] = closed["instructions"]
    window_id = uuid.UUID(closed["id"])

    # The intake's side of the race: its transaction holds the instruction and marks it
    # FUNDED; the window's settlement (the cut-off) starts before that commits.
    async with sessions() as booking, booking.begin():
        row = await booking.scalar(
            select(FundingInstruction).where(FundingInstruction.reference == instruction["reference"]).with_for_update()
        )
        message_id = await booking.scalar(
            text(
                "INSERT INTO camt054_messages (id, message_id, body_sha256, body)"
                " VALUES (gen_random_uuid(), 'CUT-OFF', '0', '')"
                " RETURNING id"
            )
        )
        notification_id = await booking.scalar(
            BankNotification.__table__.insert()
            .values(
                message_row_id=message_id,
                account="DELTRAN-NOSTRO",
                entry_reference=f"CUT-{uuid.uuid4().hex[:12]}",
                tx_index=0,
                end_to_end_id=row.reference,
                amount=row.amount,
                currency="EUR",
                credit_debit="CRDT",
                entry_status="BOOK",
                outcome="MATCHED",
                funding_instruction_id=row.id,
            )
            .returning(BankNotification.id)
        )
        await booking.execute(
            update(FundingInstruction)
            .where(FundingInstruction.id == row.id)
            .values(status="FUNDED", notification_id=notification_id, funded_at=func.now())
        )

        async def cut_off():
            async with sessions() as session, session.begin():
                return await settle_window(session, window_id)

        settling = asyncio.create_task(cut_off())
        await asyncio.sleep(0.5)  # the settlement is now waiting for (or racing) this transaction
    outcome = await settling
    assert (outcome.status, outcome.rolled_obligations) == ("SETTLED", 0)
    async with sessions() as session:
        minted = await session.scalar(
            select(func.count()).select_from(LedgerTransfer).where(LedgerTransfer.notification_id == notification_id)
        )
        status = await session.scalar(select(FundingInstruction.status).where(FundingInstruction.id == row.id))
        closed_by = await session.scalar(select(ClearingWindow.closed_by).where(ClearingWindow.id == window_id))
    assert (minted, status) == (1, "FUNDED")
    # Let the window's run (which never saw a signal for this funding) finish.
    await temporal_env.client.get_workflow_handle(closed_by).signal("funding_booked", instruction["reference"])


async def test_a_funding_after_the_cut_off_is_an_exception_to_return(
    http, credentials, sessions, settings, temporal_env
):
    await _flush_window(http, credentials, sessions, "EUR")
    await submit_all(http, credentials, [("BNPAFRPP", "INGBNL2A", "410.00")], "EUR")
    closed = (await http.post("/v1/clearing/windows/close?currency=EUR", headers=auth(credentials["admin"]))).json()
    [instruction] = closed["instructions"]
    async with sessions() as session, session.begin():
        outcome = await settle_window(session, uuid.UUID(closed["id"]))  # the deadline passed unfunded
    assert outcome.rolled_obligations == 1
    reference = f"LATE-{uuid.uuid4().hex[:12]}"
    late = await _post_camt054(
        http,
        credentials,
        camt054_for(instruction["reference"], instruction["amount"], "EUR", entry_reference=reference),
    )
    assert late.json()["entries"][0]["outcome"] == "PAYMENT_NOT_AWAITING", late.text
    entry = await _entry(sessions, reference)
    assert "EXPIRED" in entry.outcome_detail
    async with sessions() as session:
        breaks = await end_of_day_breaks(session, settings)
    assert ("unmatched_entry", str(entry.id)) in {(b["kind"], b["ref"]) for b in breaks}


# -- 6. concurrent identical submissions ---------------------------------------------------


async def test_forty_identical_concurrent_submissions_are_one_payment(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    body = {**payment_body(e2e_id), "uetr": str(uuid.uuid4())}
    responses = await asyncio.gather(*(http.post("/v1/payments", json=body, headers=bank) for _ in range(40)))
    assert [r.status_code for r in responses] == [202] * 40, [r.text for r in responses if r.status_code != 202][:2]
    assert len({r.json()["payment_id"] for r in responses}) == 1


# -- 7 and 9. inputs that were a 5xx, or accepted though they should not be ----------------


async def test_hostile_inputs_get_a_4xx_naming_the_field(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    admin = auth(credentials["admin"])
    for currency in ("ABCDEF", "aed", "0"):
        capped = await http.put(
            f"/v1/admin/banks/EBILAEAD/net-debit-caps/{currency}", json={"cap": "10.00"}, headers=admin
        )
        assert capped.status_code == 422 and capped.json()["errors"][0]["field"] == "currency", capped.text
    for e2e in (f"{e2e_id}\ufffe", "NOTPROVIDED"):
        refused = await http.post("/v1/payments", json=payment_body(e2e), headers=bank)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "end_to_end_id", refused.text
    duplicated = b'{"end_to_end_id": "%s", "end_to_end_id": "%s-2"}' % (e2e_id.encode(), e2e_id.encode())
    refused = await http.post("/v1/payments", content=duplicated, headers={**bank, "Content-Type": "application/json"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "end_to_end_id", refused.text


async def test_a_long_proprietary_entry_status_is_stored(http, credentials, sessions):
    reference = f"PRTRY-{uuid.uuid4().hex[:12]}"
    body = camt054_for(None, "5.00", entry_reference=reference).replace(
        b"<Cd>BOOK</Cd>", b"<Prtry>SETTLED-END-OF-DAY-BATCH</Prtry>"
    )
    assert b"SETTLED-END-OF-DAY-BATCH" in body
    stored = await _post_camt054(http, credentials, body)
    assert stored.status_code == 200, stored.text
    assert (await _entry(sessions, reference)).entry_status == "SETTLED-END-OF-DAY-BATCH"


async def test_the_settlement_agent_cannot_read_payments(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    payment_id = (await http.post("/v1/payments", json=payment_body(e2e_id), headers=bank)).json()["payment_id"]
    agent = auth(credentials["settlement_agent"])
    for path in (f"/v1/payments/{payment_id}", f"/v1/payments/{payment_id}/pacs002"):
        assert (await http.get(path, headers=agent)).status_code == 403
        assert (await http.get(path, headers=bank)).status_code == 200


async def _token_balance(sessions, bic: str, currency: str) -> Decimal:
    async with sessions() as session:
        return await session.scalar(
            select(Account.credits_posted - Account.debits_posted)
            .join(Participant, Participant.id == Account.participant_id)
            .where(Participant.bic == bic, Account.currency == currency, Account.kind == "token")
        )


async def _refund_of(sessions, entry_reference: str) -> Refund | None:
    async with sessions() as session:
        return await session.scalar(
            select(Refund)
            .join(BankNotification, BankNotification.id == Refund.entry_id)
            .where(BankNotification.entry_reference == entry_reference)
        )


async def test_over_funding_settles_the_window_and_the_excess_is_refunded(
    http, credentials, sessions, settings, worker
):
    await _flush_window(http, credentials, sessions, "USD")
    [payment_id] = await submit_all(http, credentials, [("CITIUS33", "CHASUS33", "90.00")], "USD")
    closed = (await http.post("/v1/clearing/windows/close?currency=USD", headers=auth(credentials["admin"]))).json()
    [instruction] = closed["instructions"]
    before = await _token_balance(sessions, "CITIUS33", "USD")
    supply_before, _ = await supply_and_fiat(sessions, "USD")
    async with sessions() as session:
        booked_before = (await backing_by_currency(session))["USD"].fiat_booked
    entry_reference = f"OVER{uuid.uuid4().hex[:16]}"
    booked = await _post_camt054(
        http, credentials, camt054_for(instruction["reference"], "125.00", "USD", entry_reference=entry_reference)
    )
    assert booked.json()["entries"][0]["matched"], booked.text
    await wait_for_status(http, payment_id, auth(credentials["banks"]["CITIUS33"]), {"COMPLETED"}, timeout_s=60)
    # The window took 90 of the 125 booked: 90 minted and paid to Chase, 35 to be paid back.
    assert await _token_balance(sessions, "CITIUS33", "USD") == before
    refund = await _refund_of(sessions, entry_reference)
    assert refund is not None and (refund.amount, refund.currency, refund.status) == (
        Decimal("35.00"), "USD", "PAYOUT_INSTRUCTED",
    )  # fmt: skip
    payouts = await http.get("/v1/payouts", params={"limit": 500}, headers=auth(credentials["settlement_agent"]))
    [listed] = [p for p in payouts.json()["items"] if p["reference"] == refund.reference]
    assert (listed["kind"], listed["bic"], listed["amount"]) == ("refund", "CITIUS33", "35.00")
    async with sessions() as session:  # Citi is told, in the settlement's transaction
        told = await session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.type == "refund.instructed", Event.data["refund_reference"].astext == refund.reference)
        )
    assert told == 1
    supply, fiat = await supply_and_fiat(sessions, "USD")
    assert supply == fiat and supply - supply_before == Decimal("90.00")
    # Settling again (a retried activity) instructs nothing new.
    async with sessions() as session, session.begin():
        await settle_window(session, uuid.UUID(closed["id"]))
    async with sessions() as session:
        assert (
            await session.scalar(select(func.count()).select_from(Refund).where(Refund.entry_id == refund.entry_id))
            == 1
        )
    # Paid back: booked by the agent's DBIT; nothing about the entry is unexplained.
    payout = BookingSpec(
        end_to_end_id=refund.reference, amount=Decimal("35.00"), currency="USD",
        entry_reference=f"P{uuid.uuid4().hex[:20]}", credit_debit="DBIT",
    )  # fmt: skip
    assert (
        await _post_camt054(http, credentials, build_camt054([payout], message_id=f"MSG-{uuid.uuid4().hex[:12]}"))
    ).json()["entries"][0]["matched"]
    async with sessions() as session:
        assert (await session.get(Refund, refund.id)).status == "COMPLETED"
        breaks = await end_of_day_breaks(session, settings)
        backing = (await backing_by_currency(session))["USD"]
    assert str(refund.entry_id) not in {b["ref"] for b in breaks}
    # The booked fiat that backs tokens grew by what was minted, not by what was booked.
    assert not backing.breaks() and backing.fiat_booked - booked_before == Decimal("90.00")


async def test_funding_the_fallback_did_not_use_is_refunded(http, credentials, sessions, settings, worker):
    await _flush_window(http, credentials, sessions, "USD")
    # Chase owes 40 net (pays Citi 200, receives 150 from SBI and 10 from EBILAEAD) and
    # funds it; SBI owes 150 and books 160; EBILAEAD owes 10 and defaults. Without its 10,
    # Chase cannot pay Citi: only SBI's payment settles, and Chase ends up receiving.
    specs = [("CHASUS33", "CITIUS33", "200.00"), ("SBININBB", "CHASUS33", "150.00"), ("EBILAEAD", "CHASUS33", "10.00")]
    await submit_all(http, credentials, specs, "USD")
    closed = (await http.post("/v1/clearing/windows/close?currency=USD", headers=auth(credentials["admin"]))).json()
    instructed = {i["bic"]: i for i in closed["instructions"]}
    assert {bic: Decimal(i["amount"]) for bic, i in instructed.items()} == {
        "CHASUS33": Decimal("40.00"), "SBININBB": Decimal("150.00"), "EBILAEAD": Decimal("10.00"),
    }  # fmt: skip
    before = {bic: await _token_balance(sessions, bic, "USD") for bic in ("CHASUS33", "CITIUS33", "SBININBB")}
    supply_before, _ = await supply_and_fiat(sessions, "USD")
    entries = {
        "CHASUS33": (f"FB{uuid.uuid4().hex[:18]}", "40.00"),
        "SBININBB": (f"FB{uuid.uuid4().hex[:18]}", "160.00"),
    }
    for bic, (entry_reference, amount) in entries.items():
        body = camt054_for(instructed[bic]["reference"], amount, "USD", entry_reference=entry_reference)
        assert (await _post_camt054(http, credentials, body)).json()["entries"][0]["matched"]
    async with sessions() as session, session.begin():
        outcome = await settle_window(session, uuid.UUID(closed["id"]))
    assert (outcome.settled_obligations, outcome.rolled_obligations) == (1, 2)
    # SBI's 150 minted and paid to Chase; SBI's extra 10 and all of Chase's 40 go back.
    after = {bic: await _token_balance(sessions, bic, "USD") for bic in before}
    assert {bic: after[bic] - before[bic] for bic in before} == {
        "CHASUS33": Decimal("150.00"), "CITIUS33": Decimal(0), "SBININBB": Decimal(0),
    }  # fmt: skip
    refunds = {bic: await _refund_of(sessions, entry_reference) for bic, (entry_reference, _) in entries.items()}
    assert {bic: (r.amount, r.status) for bic, r in refunds.items() if r} == {
        "CHASUS33": (Decimal("40.00"), "PAYOUT_INSTRUCTED"), "SBININBB": (Decimal("10.00"), "PAYOUT_INSTRUCTED"),
    }  # fmt: skip
    assert "took 0.00 of the 40.00" in refunds["CHASUS33"].reason
    supply, fiat = await supply_and_fiat(sessions, "USD")
    assert supply == fiat and supply - supply_before == Decimal("150.00")
    async with sessions() as session:
        assert not (await backing_by_currency(session))["USD"].breaks()
        breaks = await end_of_day_breaks(session, settings)
    assert not {str(r.entry_id) for r in refunds.values()} & {b["ref"] for b in breaks}
    # Were SBI's refund missing, the end-of-day run would say its funding is not accounted for.
    async with sessions() as session, session.begin():
        await session.execute(delete(Refund).where(Refund.id == refunds["SBININBB"].id))
        kinds = {
            b["kind"]
            for b in await end_of_day_breaks(session, settings)
            if b["ref"] == str(refunds["SBININBB"].entry_id)
        }
        await session.rollback()
    assert kinds == {"window_funding_not_accounted"}


async def test_every_roll_of_an_obligation_is_kept(http, credentials, sessions, temporal_env, settings, worker):
    await _flush_window(http, credentials, sessions, "INR")
    [payment_id] = await submit_all(http, credentials, [("HDFCINBB", "ICICINBB", "70.00")], "INR")
    windows = []
    for _ in range(2):  # unfunded twice: rolled twice
        closed = (await http.post("/v1/clearing/windows/close?currency=INR", headers=auth(credentials["admin"]))).json()
        async with sessions() as session, session.begin():
            outcome = await settle_window(session, uuid.UUID(closed["id"]))
        assert outcome.rolled_obligations == 1
        windows.append(closed["id"])
    state = (await http.get(f"/v1/payments/{payment_id}", headers=auth(credentials["banks"]["HDFCINBB"]))).json()
    rolls = state["obligation"]["rolls"]
    assert [r["from_window_id"] for r in rolls] == windows
    assert rolls[0]["to_window_id"] == windows[1]
    assert state["obligation"]["rolled_from_window_id"] == windows[1]
