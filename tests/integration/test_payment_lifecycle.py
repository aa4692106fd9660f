"""The payment spine end to end over HTTP, on the real servers: submit → compliance →
obligation → camt.054 → settle → mint."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus

from deltran import ledger
from deltran.db.tables import BankNotification, ComplianceResult, Obligation, Participant, Payment, Token
from deltran.temporal import search_attributes
from tests.support.payments import auth, camt054_for, payment_body, wait_for_status
from tests.support.visibility import listed
from workflows.payment import PaymentWorkflow


async def submit(http, credentials, body, bic="EBILAEAD"):
    return await http.post("/v1/payments", json=body, headers=auth(credentials["banks"][bic]))


async def post_camt054(http, credentials, xml: bytes):
    return await http.post(
        "/v1/notifications/camt054",
        content=xml,
        headers={**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"},
    )


async def token_balance(sessions, bic: str, currency: str):
    async with sessions() as session:
        pid = await session.scalar(select(Participant.id).where(Participant.bic == bic))
        await ledger.ensure_accounts(session, [pid], currency)
        await session.commit()
        return await ledger.balance(session, await ledger.account_id(session, pid, currency, "token"))


async def test_happy_path_reaches_completed_with_one_token(http, credentials, sessions, temporal_env, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    payee_before = await token_balance(sessions, "SBININBB", "AED")

    accepted = await submit(http, credentials, payment_body(e2e_id))
    assert accepted.status_code == 202, accepted.text
    payment_id = accepted.json()["payment_id"]
    assert accepted.json()["workflow_id"] == f"payment-EBILAEAD-{e2e_id}"

    waiting = await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    assert waiting["obligation"]["status"] == "PENDING"
    assert waiting["token"] is None

    receipt = await post_camt054(http, credentials, camt054_for(e2e_id, entry_reference=f"NTRY-{e2e_id}"))
    assert receipt.status_code == 200, receipt.text
    [entry] = receipt.json()["entries"]
    assert entry["matched"] is True and entry["payment_id"] == payment_id

    done = await wait_for_status(http, payment_id, bank, {"COMPLETED"})
    assert done["amount"] == "100000.00" and done["currency"] == "AED"
    assert done["obligation"]["status"] == "SETTLED"
    assert done["obligation"]["settled_at"] is not None
    assert done["obligation"]["camt054_entry_reference"] == f"NTRY-{e2e_id}"
    assert done["obligation"]["bank_confirmation_reference"] == f"BR-NTRY-{e2e_id}"
    assert done["token"] == {"id": done["token"]["id"], "amount": "100000.00", "currency": "AED"}

    # The payee bank sees the payment it receives, and now holds the tokens.
    as_payee = await http.get(f"/v1/payments/{payment_id}", headers=auth(credentials["banks"]["SBININBB"]))
    assert as_payee.status_code == 200
    assert await token_balance(sessions, "SBININBB", "AED") - payee_before == 100000

    # Ops find it in Temporal by its search attributes, completed, with its final status.
    handle = temporal_env.client.get_workflow_handle(done["workflow_id"])
    await asyncio.wait_for(handle.result(), timeout=30)  # closes just after the row's COMPLETED commit
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    found = await listed(
        temporal_env.client, f"EndToEndId = '{e2e_id}' AND DebtorAgentBic = 'EBILAEAD' AND PaymentCurrency = 'AED'"
    )
    assert [wf.id for wf in found] == [done["workflow_id"]]
    assert description.typed_search_attributes.get(search_attributes.PAYMENT_STATUS) == "COMPLETED"


async def test_sanctions_hit_rejects_without_obligation(http, credentials, sessions, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    accepted = await submit(http, credentials, payment_body(e2e_id, creditor_name="Viktor Blacklistov"))
    assert accepted.status_code == 202
    payment_id = accepted.json()["payment_id"]
    rejected = await wait_for_status(http, payment_id, bank, {"REJECTED", "COMPLETED", "AWAITING_SETTLEMENT"})
    assert rejected["status"] == "REJECTED"
    assert rejected["rejection_code"] == "RR04"
    assert "DEMO-001" in rejected["rejection_reason"]
    assert rejected["obligation"] is None
    async with sessions() as session:
        result = await session.scalar(
            select(ComplianceResult).where(ComplianceResult.payment_id == uuid.UUID(payment_id))
        )
        assert result is not None and result.passed is False and result.details["party"] == "creditor"
        assert (
            await session.scalar(
                select(func.count()).select_from(Obligation).where(Obligation.payment_id == uuid.UUID(payment_id))
            )
            == 0
        )


async def test_duplicate_payment_is_one_payment_and_one_workflow(http, credentials, sessions, temporal_env, e2e_id):
    body = payment_body(e2e_id)
    first = await submit(http, credentials, body)
    second = await submit(http, credentials, body)
    assert first.status_code == second.status_code == 202
    assert first.json()["payment_id"] == second.json()["payment_id"]
    runs = await listed(temporal_env.client, f"WorkflowId = '{first.json()['workflow_id']}'")
    assert len(runs) == 1
    async with sessions() as session:
        assert (
            await session.scalar(select(func.count()).select_from(Payment).where(Payment.end_to_end_id == e2e_id)) == 1
        )

    conflicting = await submit(http, credentials, {**body, "amount": "100001.00"})
    assert conflicting.status_code == 409
    assert e2e_id in conflicting.json()["detail"]


async def test_duplicate_camt054_mints_one_token(http, credentials, sessions, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    payment_id = (await submit(http, credentials, payment_body(e2e_id, amount="2500.50"))).json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    xml = camt054_for(e2e_id, "2500.50", entry_reference=f"NTRY-{e2e_id}")
    first = await post_camt054(http, credentials, xml)
    second = await post_camt054(http, credentials, xml)
    assert first.json()["entries"][0]["duplicate"] is False
    assert second.json()["entries"][0]["duplicate"] is True
    assert second.json()["entries"][0]["matched"] is True
    # A second, different booking for the same payment is stored as an exception.
    other = await post_camt054(http, credentials, camt054_for(e2e_id, "2500.50", entry_reference=f"OTHER-{e2e_id}"))
    assert other.json()["entries"][0]["matched"] is False
    assert other.json()["entries"][0]["outcome"] == "PAYMENT_NOT_AWAITING"

    await wait_for_status(http, payment_id, bank, {"COMPLETED"})
    async with sessions() as session:
        pid = uuid.UUID(payment_id)
        assert await session.scalar(select(func.count()).select_from(Token).where(Token.payment_id == pid)) == 1
        assert (
            await session.scalar(
                select(func.count()).select_from(BankNotification).where(BankNotification.payment_id == pid)
            )
            == 2
        )


async def test_camt054_for_unknown_payment_is_stored_unmatched(http, credentials, sessions, e2e_id):
    response = await post_camt054(http, credentials, camt054_for(e2e_id, entry_reference=f"NTRY-{e2e_id}"))
    assert response.status_code == 200
    [entry] = response.json()["entries"]
    assert entry["matched"] is False and entry["outcome"] == "UNMATCHED"
    async with sessions() as session:
        row = await session.scalar(select(BankNotification).where(BankNotification.end_to_end_id == e2e_id))
        assert row is not None and row.outcome == "UNMATCHED" and row.amount == 100000


async def test_pending_entry_is_stored_and_does_not_settle(http, credentials, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    payment_id = (await submit(http, credentials, payment_body(e2e_id))).json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    pending = await post_camt054(http, credentials, camt054_for(e2e_id, entry_reference=f"P-{e2e_id}", status="PDNG"))
    assert pending.json()["entries"][0]["outcome"] == "NOT_BOOKED"
    wrong_amount = await post_camt054(http, credentials, camt054_for(e2e_id, "99999.99", entry_reference=f"W-{e2e_id}"))
    assert wrong_amount.json()["entries"][0]["outcome"] == "AMOUNT_MISMATCH"
    state = (await http.get(f"/v1/payments/{payment_id}", headers=bank)).json()
    assert state["status"] == "AWAITING_SETTLEMENT" and state["obligation"]["status"] == "PENDING"


async def test_concurrent_duplicates_make_one_workflow_and_one_token(http, credentials, sessions, temporal_env, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    body = payment_body(e2e_id, amount="310.25")
    submissions = await asyncio.gather(*(submit(http, credentials, body) for _ in range(5)))
    assert {r.status_code for r in submissions} == {202}
    assert len({r.json()["payment_id"] for r in submissions}) == 1
    payment_id = submissions[0].json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})

    xml = camt054_for(e2e_id, "310.25", entry_reference=f"NTRY-{e2e_id}")
    posts = await asyncio.gather(*(post_camt054(http, credentials, xml) for _ in range(4)))
    assert {r.status_code for r in posts} == {200}
    assert sorted(r.json()["entries"][0]["duplicate"] for r in posts) == [False, True, True, True]

    done = await wait_for_status(http, payment_id, bank, {"COMPLETED"})
    handle = temporal_env.client.get_workflow_handle_for(PaymentWorkflow.run, done["workflow_id"])
    # The workflow's own final state: the row turns COMPLETED in the last step's commit, a
    # moment before the workflow has taken that step's result (a query then sees the state before).
    state = await asyncio.wait_for(handle.result(), timeout=30)
    assert state.status == "COMPLETED" and str(state.token_id) == done["token"]["id"]
    runs = await listed(temporal_env.client, f"WorkflowId = '{done['workflow_id']}'")
    assert len(runs) == 1
    async with sessions() as session:
        pid = uuid.UUID(payment_id)
        assert await session.scalar(select(func.count()).select_from(Token).where(Token.payment_id == pid)) == 1
        assert (
            await session.scalar(
                select(func.count()).select_from(BankNotification).where(BankNotification.payment_id == pid)
            )
            == 1
        )


async def test_a_second_entry_for_a_funded_payment_posted_at_once_is_stored_once(http, credentials, e2e_id):
    """Another booking for a payment already funded by a first one, posted eight times
    at once: every post is answered, the entry is stored once, as an exception to return
    (the payment is funded), and the other posts are its duplicates."""
    bank = auth(credentials["banks"]["EBILAEAD"])
    body = payment_body(e2e_id, amount="410.50")
    payment_id = (await submit(http, credentials, body)).json()["payment_id"]
    await wait_for_status(http, payment_id, bank, {"AWAITING_SETTLEMENT"})
    first = await post_camt054(http, credentials, camt054_for(e2e_id, "410.50", entry_reference=f"A-{e2e_id}"))
    assert first.json()["entries"][0]["outcome"] == "MATCHED"

    second = camt054_for(e2e_id, "410.50", entry_reference=f"B-{e2e_id}")
    posts = await asyncio.gather(*(post_camt054(http, credentials, second) for _ in range(8)))
    assert {r.status_code for r in posts} == {200}
    entries = [r.json()["entries"][0] for r in posts]
    assert sorted(e["duplicate"] for e in entries) == [False] + [True] * 7
    assert {e["outcome"] for e in entries} == {"PAYMENT_NOT_AWAITING"}
    await wait_for_status(http, payment_id, bank, {"COMPLETED"})
