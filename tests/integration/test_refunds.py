"""Refunds of stranded fiat on the real stack: a booked camt.054 entry for a payment that
can no longer settle (rejected, cancelled), of the wrong amount, or too late or too little
for its window's funding becomes a refund to the bank that sent it, listed in
GET /v1/payouts (kind refund) until the settlement agent's DBIT camt.054 books it; the
end-of-day run then has nothing unexplained about it, and supply and backing do not move.
(A window's over-funding: tests/integration/test_money_safety.py.)"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import select

from activities.clearing import ensure_open_window, settle_window
from deltran import refunds
from deltran.config import Settings
from deltran.db.tables import BankNotification, Event, Participant, Refund
from deltran.iso20022.camt054 import BookingSpec, build_camt054
from deltran.reconciliation import backing_by_currency, end_of_day_breaks
from tests.integration.test_clearing import submit_all
from tests.support.auditor import SANCTIONED
from tests.support.payments import auth, camt054_for, complete_gross_payment, payment_body, wait_for_status

XML = {"Content-Type": "application/xml"}


async def _book(http, credentials, body: bytes) -> dict:
    booked = await http.post(
        "/v1/notifications/camt054", content=body, headers=auth(credentials["settlement_agent"]) | XML
    )
    assert booked.status_code == 200, booked.text
    return booked.json()["entries"][0]


async def _events(sessions, references: list[str]) -> list[tuple[str, str, str, str]]:
    """(refund reference, event type, bank told, amount) of the refunds' events."""
    async with sessions() as session:
        rows = await session.execute(
            select(Event.data["refund_reference"].astext, Event.type, Participant.bic, Event.data["amount"].astext)
            .join(Participant, Participant.id == Event.participant_id)
            .where(Event.data["refund_reference"].astext.in_(references))
        )
    return [tuple(r) for r in rows.all()]


def _payout(reference: str, amount: str) -> bytes:
    entry = f"P{uuid.uuid4().hex[:20]}"
    spec = BookingSpec(
        end_to_end_id=reference, amount=Decimal(amount), currency="AED", entry_reference=entry, credit_debit="DBIT"
    )
    return build_camt054([spec], message_id=f"MSG-{entry}")


async def _stranded_entry(http, credentials, sessions, e2e: str, amount: str) -> uuid.UUID:
    reference = f"N{uuid.uuid4().hex[:20]}"
    booked = await _book(http, credentials, camt054_for(e2e, amount, entry_reference=reference))
    assert not booked["matched"]
    async with sessions() as session:
        entry = await session.scalar(select(BankNotification).where(BankNotification.entry_reference == reference))
    assert entry is not None and entry.outcome == "PAYMENT_NOT_AWAITING"
    return entry.id


async def test_fiat_booked_for_a_payment_that_cannot_settle_is_paid_back(
    http, credentials, sessions, settings: Settings
):
    bank = auth(credentials["banks"]["EBILAEAD"])
    agent = auth(credentials["settlement_agent"])
    # One recalled before its booking, one completed and then booked a second time, and
    # one rejected by sanctions screening: all three booked.
    e2e_cancelled, e2e_sanctioned = f"RF-{uuid.uuid4().hex[:12]}", f"RF-{uuid.uuid4().hex[:12]}"
    recalled = await http.post(
        "/v1/payments", json={**payment_body(e2e_cancelled, amount="300.00"), "urgent": True}, headers=bank
    )
    await wait_for_status(http, recalled.json()["payment_id"], bank, {"AWAITING_SETTLEMENT"})
    cancel = await http.post(
        "/v1/cancellations", json={"payment_id": recalled.json()["payment_id"], "reason": "DUPL"}, headers=bank
    )
    assert cancel.json()["status"] == "CNCL"
    twice = await complete_gross_payment(http, credentials, "700.00", prefix="RF")
    e2e_twice = (await http.get(f"/v1/payments/{twice}", headers=bank)).json()["end_to_end_id"]
    sanctioned = await http.post(
        "/v1/payments", json=payment_body(e2e_sanctioned, amount="900.00", creditor_name=SANCTIONED), headers=bank
    )
    await wait_for_status(http, sanctioned.json()["payment_id"], bank, {"REJECTED"})
    entries = [
        await _stranded_entry(http, credentials, sessions, e2e_cancelled, "300.00"),
        await _stranded_entry(http, credentials, sessions, e2e_twice, "700.00"),
    ]
    frozen = await _stranded_entry(http, credentials, sessions, e2e_sanctioned, "900.00")

    async with sessions() as session, session.begin():
        await refunds.instruct_stranded(session, settings.unmatched_refund_after_s)  # what the sweeper runs every round
    async with sessions() as session, session.begin():
        await refunds.instruct_stranded(session, settings.unmatched_refund_after_s)  # again: nothing twice
    async with sessions() as session:
        made = list(await session.scalars(select(Refund).where(Refund.entry_id.in_([*entries, frozen]))))
    # A sanctions hit's fiat is frozen for compliance, not paid back.
    assert sorted((r.entry_id, r.amount) for r in made) == sorted(
        zip(entries, (Decimal("300.00"), Decimal("700.00")), strict=True)
    )
    # A refunded entry leaves what the sweeper reads each round; a frozen one stays.
    async with sessions() as session:
        marked = dict(
            (
                await session.execute(
                    select(BankNotification.id, BankNotification.refunded_at.is_not(None)).where(
                        BankNotification.id.in_([*entries, frozen])
                    )
                )
            ).all()
        )
    assert marked == {entries[0]: True, entries[1]: True, frozen: False}
    listed = (await http.get("/v1/payouts", params={"limit": 500}, headers=agent)).json()["items"]
    mine = {p["reference"]: p for p in listed if p["reference"] in {r.reference for r in made}}
    assert {(p["kind"], p["bic"], p["status"], p["payout_account"]["bic"]) for p in mine.values()} == {
        ("refund", "EBILAEAD", "PAYOUT_INSTRUCTED", "EBILAEAD")
    }
    async with sessions() as session:
        breaks = await end_of_day_breaks(session, settings)
    unexplained = {b["ref"] for b in breaks if b["kind"] == "unmatched_entry"}
    assert not unexplained & {str(e) for e in entries} and str(frozen) in unexplained

    # The agent pays one back: a wrong amount books nothing, the right one books it once.
    async with sessions() as session:
        before = await backing_by_currency(session)
    refund = next(r for r in made if r.amount == Decimal("700.00"))
    assert not (await _book(http, credentials, _payout(refund.reference, "70.00")))["matched"]
    assert (await _book(http, credentials, _payout(refund.reference, "700.00")))["matched"]
    assert not (await _book(http, credentials, _payout(refund.reference, "700.00")))["matched"]  # a second payout
    async with sessions() as session:
        done = await session.get(Refund, refund.id)
        after = await backing_by_currency(session)
    assert done is not None and done.status == "COMPLETED" and done.notification_id is not None
    # Emirates NBD was told of each refund when it was instructed, and of this one when paid.
    told = await _events(sessions, [r.reference for r in made])
    assert sorted(told) == sorted(
        [(r.reference, "refund.instructed", "EBILAEAD", str(r.amount.quantize(Decimal("0.01")))) for r in made]
        + [(refund.reference, "refund.completed", "EBILAEAD", "700.00")]
    )
    completed = (await http.get("/v1/payouts", params={"status": "COMPLETED", "limit": 500}, headers=agent)).json()
    assert refund.reference in {p["reference"] for p in completed["items"]}
    late = await http.post(
        f"/v1/admin/refunds/{refund.reference}/hold", json={"reason": "too late"}, headers=auth(credentials["admin"])
    )
    assert late.status_code == 409 and late.json()["type"].endswith("refund-already-paid")

    # Never minted, so paying it back moves neither supply nor backing.
    def books(backing) -> tuple[Decimal, Decimal]:
        return (backing.token_supply, backing.fiat_booked) if backing else (Decimal(0), Decimal(0))

    assert books(after.get("AED")) == books(before.get("AED"))
    assert after.get("AED") is None or not after["AED"].breaks()


async def test_a_credit_that_matched_nothing_goes_back_to_the_debtor_agent_named_after_a_while(
    http, credentials, sessions, settings: Settings
):
    def credit(debtor_agent: str | None) -> tuple[str, bytes]:
        reference = f"U{uuid.uuid4().hex[:20]}"
        spec = BookingSpec(
            end_to_end_id=f"NOBODY-{uuid.uuid4().hex[:8]}", amount=Decimal("45.00"), currency="AED",
            entry_reference=reference, debtor_agent_bic=debtor_agent,
        )  # fmt: skip
        return reference, build_camt054([spec], message_id=f"MSG-{reference}")

    named, named_body = credit("EBILAEAD")
    anonymous, anonymous_body = credit(None)
    stranger, stranger_body = credit("NOTAAEAD")  # no participant has this BIC
    for body in (named_body, anonymous_body, stranger_body):
        assert not (await _book(http, credentials, body))["matched"]

    async def refunded() -> dict[str, str]:
        async with sessions() as session:
            rows = await session.execute(
                select(BankNotification.entry_reference, Refund.reference)
                .join(Refund, Refund.entry_id == BankNotification.id)
                .where(BankNotification.entry_reference.in_([named, anonymous, stranger]))
            )
        return dict(rows.all())

    async with sessions() as session, session.begin():
        await refunds.instruct_stranded(session, unmatched_after_s=3600)  # not yet: time to match it by hand
    assert await refunded() == {}
    async with sessions() as session, session.begin():
        await refunds.instruct_stranded(session, unmatched_after_s=0.001)
    assert set(await refunded()) == {named}  # the others: ops find out who sent them
    listed = await http.get("/v1/payouts", params={"limit": 500}, headers=auth(credentials["settlement_agent"]))
    [payout] = [p for p in listed.json()["items"] if p["reference"] == (await refunded())[named]]
    assert (payout["kind"], payout["bic"], payout["amount"]) == ("refund", "EBILAEAD", "45.00")


def _credit(e2e: str, amount: str, currency: str = "AED", **spec) -> tuple[str, bytes]:
    reference = f"C{uuid.uuid4().hex[:20]}"
    booking = BookingSpec(
        end_to_end_id=e2e, amount=Decimal(amount), currency=currency, entry_reference=reference, **spec
    )
    return reference, build_camt054([booking], message_id=f"MSG-{reference}")


async def _entry_ids(sessions, references: list[str]) -> dict[str, str]:
    async with sessions() as session:
        rows = await session.execute(
            select(BankNotification.entry_reference, BankNotification.id).where(
                BankNotification.entry_reference.in_(references)
            )
        )
    return {reference: str(entry_id) for reference, entry_id in rows.all()}


async def test_credits_of_the_wrong_amount_or_too_late_for_their_window_go_back(
    http, credentials, sessions, settings: Settings
):
    bank = auth(credentials["banks"]["EBILAEAD"])
    # A gross payment booked with another amount: it keeps waiting, and the credit goes
    # back when the entry says whose it is (its debtor agent); one matched by EndToEndId
    # alone may be another bank's, and stays with ops.
    e2e = f"RF-{uuid.uuid4().hex[:12]}"
    gross = await http.post("/v1/payments", json={**payment_body(e2e, amount="500.00"), "urgent": True}, headers=bank)
    await wait_for_status(http, gross.json()["payment_id"], bank, {"AWAITING_SETTLEMENT"})
    wrong, wrong_body = _credit(e2e, "499.99", debtor_agent_bic="EBILAEAD")
    anonymous, anonymous_body = _credit(e2e, "5.00")
    for body in (wrong_body, anonymous_body):
        assert (await _book(http, credentials, body))["outcome"] == "AMOUNT_MISMATCH"
    # A window funding of less than instructed, then the full amount after the cut-off.
    async with sessions() as session, session.begin():
        await ensure_open_window(session, "INR")
    admin = auth(credentials["admin"])
    assert (await http.post("/v1/clearing/windows/close?currency=INR", headers=admin)).status_code == 202
    await submit_all(http, credentials, [("HDFCINBB", "ICICINBB", "70.00")], "INR")
    closed = (await http.post("/v1/clearing/windows/close?currency=INR", headers=admin)).json()
    [instruction] = closed["instructions"]
    short, short_body = _credit(instruction["reference"], "50.00", "INR")
    assert (await _book(http, credentials, short_body))["outcome"] == "AMOUNT_MISMATCH"
    async with sessions() as session, session.begin():
        assert (await settle_window(session, uuid.UUID(closed["id"]))).rolled_obligations == 1
    late, late_body = _credit(instruction["reference"], "70.00", "INR")
    assert (await _book(http, credentials, late_body))["outcome"] == "PAYMENT_NOT_AWAITING"

    async with sessions() as session, session.begin():
        await refunds.instruct_stranded(session, settings.unmatched_refund_after_s)
    async with sessions() as session:
        rows = await session.execute(
            select(BankNotification.entry_reference, BankNotification.outcome, Participant.bic, Refund.amount)
            .join(Refund, Refund.entry_id == BankNotification.id)
            .join(Participant, Participant.id == Refund.participant_id)
            .where(BankNotification.entry_reference.in_([wrong, anonymous, short, late]))
        )
        made = {r.entry_reference: (r.outcome, r.bic, r.amount) for r in rows}
        breaks = await end_of_day_breaks(session, settings)
    assert made == {
        wrong: ("AMOUNT_MISMATCH", "EBILAEAD", Decimal("499.99")),
        short: ("AMOUNT_MISMATCH", "HDFCINBB", Decimal("50.00")),
        late: ("PAYMENT_NOT_AWAITING", "HDFCINBB", Decimal("70.00")),
    }
    ids = await _entry_ids(sessions, [wrong, anonymous, short, late])
    listed = {b["ref"]: b["kind"] for b in breaks}
    assert {ref: listed.get(entry) for ref, entry in ids.items()} == {
        wrong: None,
        short: None,
        late: None,
        anonymous: "amount_or_currency_mismatch",
    }

    # The agent reverses a credit DelTran refunds: paid back twice unless ops stop one.
    reversal = BookingSpec(
        end_to_end_id=instruction["reference"], amount=Decimal("50.00"), currency="INR",
        entry_reference=f"V{uuid.uuid4().hex[:20]}", credit_debit="DBIT", reversal=True,
    )  # fmt: skip
    await _book(http, credentials, build_camt054([reversal], message_id=f"MSG-{uuid.uuid4().hex[:12]}"))
    async with sessions() as session:
        short_refund = await session.scalar(select(Refund.reference).where(Refund.entry_id == uuid.UUID(ids[short])))
        breaks = await end_of_day_breaks(session, settings)
    assert {b["kind"] for b in breaks if b["ref"] == short_refund} == {"refunded_entry_reversed"}

    # The payment still waits for its own amount, and completes with it.
    _, right_body = _credit(e2e, "500.00")
    assert (await _book(http, credentials, right_body))["matched"]
    await wait_for_status(http, gross.json()["payment_id"], bank, {"COMPLETED"})


async def test_a_refund_held_by_compliance_is_not_paid_until_released(http, credentials, sessions, settings: Settings):
    bank, agent, admin = (
        auth(credentials["banks"]["EBILAEAD"]), auth(credentials["settlement_agent"]), auth(credentials["admin"]),
    )  # fmt: skip
    e2e = f"RF-{uuid.uuid4().hex[:12]}"
    gross = await http.post("/v1/payments", json={**payment_body(e2e, amount="800.00"), "urgent": True}, headers=bank)
    await wait_for_status(http, gross.json()["payment_id"], bank, {"AWAITING_SETTLEMENT"})
    wrong, body = _credit(e2e, "80.00", debtor_agent_bic="EBILAEAD")
    assert (await _book(http, credentials, body))["outcome"] == "AMOUNT_MISMATCH"
    async with sessions() as session, session.begin():
        await refunds.instruct_stranded(session, settings.unmatched_refund_after_s)
    async with sessions() as session:
        refund = await session.scalar(
            select(Refund)
            .join(BankNotification, BankNotification.id == Refund.entry_id)
            .where(BankNotification.entry_reference == wrong)
        )
    assert refund is not None
    path = f"/v1/admin/refunds/{refund.reference}"

    async def listed() -> bool:
        items = (await http.get("/v1/payouts", params={"limit": 500}, headers=agent)).json()["items"]
        return refund.reference in {p["reference"] for p in items}

    assert await listed()
    assert (await http.post(f"{path}/hold", json={"reason": "compliance review"}, headers=bank)).status_code == 403
    held = await http.post(f"{path}/hold", json={"reason": "compliance review CR-7"}, headers=admin)
    assert held.status_code == 200 and held.json()["status"] == "HELD", held.text
    assert (await http.post(f"{path}/hold", json={"reason": "again"}, headers=admin)).json()["status"] == "HELD"
    assert not await listed()
    async with sessions() as session:
        breaks = await end_of_day_breaks(session, settings)
    assert [b["detail"] for b in breaks if b["ref"] == refund.reference and b["kind"] == "refund_held"][0].count("CR-7")
    # Released: back on the list with a new deadline.
    released = await http.post(f"{path}/release", headers=admin)
    assert released.status_code == 200 and released.json()["status"] == "PAYOUT_INSTRUCTED"
    assert released.json()["deadline"] > held.json()["deadline"] and await listed()
    assert (await http.post(f"{path}/release", headers=admin)).status_code == 200  # not held: nothing changes
    # Held again and paid anyway: not booked (an exception to reverse), and never released
    # to be paid a second time.
    assert (await http.post(f"{path}/hold", json={"reason": "second look"}, headers=admin)).status_code == 200
    assert not (await _book(http, credentials, _payout(refund.reference, "80.00")))["matched"]
    again = await http.post(f"{path}/release", headers=admin)
    assert again.status_code == 409 and again.json()["type"].endswith("refund-already-paid"), again.text
    assert not await listed()
    assert (
        await http.post("/v1/admin/refunds/RFD-" + "0" * 28 + "/hold", json={"reason": "x"}, headers=admin)
    ).status_code == 404
    assert (await http.post("/v1/admin/refunds/RDM-1/hold", json={"reason": "x"}, headers=admin)).status_code == 422
