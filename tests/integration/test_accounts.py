"""GET /v1/accounts and /v1/accounts/{currency}/statement: a bank's balances and the
statement of its token account, JSON and camt.053.001.08, on the real stack.

Two banks of the test's own exchange one gross payment, so their ledgers hold exactly
what the test did: the payer's fiat booked and minted, then the tokens moved to the payee."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from lxml import etree
from sqlalchemy import text

from deltran import ledger, statements
from deltran.iso20022.camt053 import NS
from deltran.iso20022.xml_safety import load_schema
from tests.support.payments import auth, new_bank, pay_between_new_banks


@pytest.fixture
async def paid(http, credentials):
    """Bank A pays bank B 1,234.50 AED gross; the payment COMPLETED. (A, A's key, B, B's key,
    the payment, its EndToEndId, the time before it.)"""
    done = await pay_between_new_banks(http, credentials)
    return done.debtor_bic, done.debtor, done.creditor_bic, done.creditor, done.payment, done.end_to_end_id, done.before


async def read_statement(http, headers: dict, covering: datetime, currency: str = "AED", **params) -> dict:
    """The statement once it reaches past `covering`: a statement ends where every earlier
    posting is committed (about a second ago), so one asked for right after a posting
    may end before it."""
    for _ in range(100):
        response = await http.get(f"/v1/accounts/{currency}/statement", params=params, headers=headers)
        assert response.status_code == 200, response.text
        statement = response.json()
        end = datetime.fromisoformat(statement["to"])
        if end > covering or "to" in params and end == datetime.fromisoformat(params["to"]):
            return statement
        await asyncio.sleep(0.2)
    raise AssertionError(f"the statement never reached {covering}: {statement['to']}")


NSM = {"c": NS}


def _balance(statement: dict) -> Decimal:
    """Opening plus every posting: what the closing balance must be."""
    moves = (Decimal(p["amount"]) * (1 if p["direction"] == "CRDT" else -1) for p in statement["postings"])
    return Decimal(statement["opening_balance"]) + sum(moves, Decimal(0))


async def test_balances_show_the_payer_s_booked_fiat_and_the_payee_s_tokens(http, credentials, paid):
    a, a_key, b, b_key, *_ = paid
    payer = (await http.get("/v1/accounts", headers=a_key)).json()
    payee = (await http.get("/v1/accounts", headers=b_key)).json()
    zero = {"reserved": "0.00", "paid_out": "0.00", "in_escrow": "0.00"}
    assert payer == {"accounts": [{"currency": "AED", "fiat": "1234.50", "tokens": "0.00", **zero}]}
    assert payee == {"accounts": [{"currency": "AED", "fiat": "0.00", "tokens": "1234.50", **zero}]}
    as_admin = await http.get("/v1/accounts", params={"bic": b}, headers=auth(credentials["admin"]))
    assert as_admin.json() == payee


async def test_a_statement_balances_and_names_every_posting(http, paid):
    a, a_key, b, b_key, payment, e2e, before = paid
    done = datetime.now(UTC)
    period = {"from": before.isoformat(), "to": (done + timedelta(minutes=1)).isoformat()}
    payer = await read_statement(http, a_key, done, **period)
    payee = await read_statement(http, b_key, done, **period)

    assert payer["from"] == period["from"].replace("+00:00", "Z") and payer["to"] < period["to"]
    assert payer["opening_balance"] == "0.00" and payer["closing_balance"] == "0.00"
    minted, paid_out = payer["postings"]
    assert (minted["kind"], minted["direction"], minted["amount"]) == ("fiat_booked", "CRDT", "1234.50")
    assert minted["camt054_entry_reference"] == payment["obligation"]["camt054_entry_reference"]
    assert (paid_out["kind"], paid_out["direction"], paid_out["amount"]) == ("obligation", "DBIT", "1234.50")
    assert (paid_out["payment_id"], paid_out["end_to_end_id"], paid_out["counterparty_bic"]) == (
        payment["payment_id"],
        e2e,
        b,
    )
    [received] = payee["postings"]
    assert (received["direction"], received["counterparty_bic"], received["obligation_id"]) == (
        "CRDT",
        a,
        payment["obligation"]["id"],
    )
    assert payee["closing_balance"] == "1234.50" and _balance(payee) == Decimal("1234.50")
    assert _balance(payer) == Decimal(payer["closing_balance"])
    assert (payee["page"], payee["next_cursor"]) == (1, None)
    assert (payee["page_opening_balance"], payee["page_closing_balance"]) == ("0.00", "1234.50")

    # Two periods that meet: the first's closing is the second's opening.
    cut = datetime.fromisoformat(received["booked_at"])
    first = await read_statement(http, b_key, done, **{**period, "to": cut.isoformat()})
    second = await read_statement(http, b_key, done, **{**period, "from": cut.isoformat()})
    assert (first["closing_balance"], first["postings"]) == ("0.00", [])
    assert second["opening_balance"] == "0.00" and second["postings"] == payee["postings"]
    # The same period from another offset is the same statement.
    in_dubai = {
        k: datetime.fromisoformat(v).astimezone(timezone(timedelta(hours=4))).isoformat() for k, v in period.items()
    }
    again = await read_statement(http, b_key, done, **{**in_dubai, "to": payee["to"]})
    assert (again["opening_balance"], again["postings"]) == (payee["opening_balance"], payee["postings"])


async def test_a_statement_as_camt053_is_valid_and_balances(http, paid):
    a, a_key, *_, before = paid
    done = datetime.now(UTC)
    period = {
        "from": before.isoformat(),
        "to": (await read_statement(http, a_key, done, **{"from": before.isoformat()}))["to"],
    }
    xml = {**a_key, "Accept": "application/xml"}
    response = await http.get("/v1/accounts/AED/statement", params=period, headers=xml)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    doc = etree.fromstring(response.content)
    load_schema("camt.053.001.08").assertValid(doc)
    balances = _camt053_balances(doc)
    entries = _camt053_entries(doc)
    assert len(entries) == 2 and balances["OPBD"] + sum(entries) == balances["CLBD"] == Decimal("0.00")
    assert doc.findtext(".//c:Stmt/c:Acct/c:Ownr/c:Id/c:OrgId/c:AnyBIC", namespaces=NSM) == a
    minted = doc.find(".//c:Stmt/c:Ntry", NSM)
    assert minted.findtext("c:BkTxCd/c:Prtry/c:Cd", namespaces=NSM) == "FIAT_BOOKED"
    # Every message its own MsgId; the statement (the period) one Stmt/Id.
    again = etree.fromstring((await http.get("/v1/accounts/AED/statement", params=period, headers=xml)).content)
    ids = [
        (d.findtext(".//c:GrpHdr/c:MsgId", namespaces=NSM), d.findtext(".//c:Stmt/c:Id", namespaces=NSM))
        for d in (doc, again)
    ]
    assert ids[0][0] != ids[1][0] and ids[0][1] == ids[1][1]


def _camt053_balances(doc) -> dict[str, Decimal]:
    return {
        b.findtext("c:Tp/c:CdOrPrtry/c:Cd", namespaces=NSM): _signed(b) for b in doc.iterfind(".//c:Stmt/c:Bal", NSM)
    }


def _signed(element) -> Decimal:
    amount = Decimal(element.findtext("c:Amt", namespaces=NSM))
    return amount if element.findtext("c:CdtDbtInd", namespaces=NSM) == "CRDT" else -amount


def _camt053_entries(doc) -> list[Decimal]:
    return [_signed(e) for e in doc.iterfind(".//c:Stmt/c:Ntry", NSM)]


@pytest.mark.parametrize(
    ("who", "path", "params", "status"),
    [
        ("bank", "/v1/accounts/XYZ/statement", {}, 404),
        ("bank", "/v1/accounts/AED/statement", {"from": "2026-12-07T00:00:00"}, 422),
        ("bank", "/v1/accounts/AED/statement", {"from": "0001-01-01T00:00:00+01:00"}, 422),
        ("bank", "/v1/accounts/AED/statement", {"from": "2026-12-07T10:00:00Z", "to": "2026-12-07T09:00:00Z"}, 422),
        ("bank", "/v1/accounts/AED/statement", {"from": "1700000000"}, 422),  # not read as seconds since 1970
        ("bank", "/v1/accounts/AED/statement", {"to": "20261207"}, 422),
        ("bank", "/v1/accounts/AED/statement", {"from": "2999-01-01T00:00:00Z"}, 422),  # the future
        ("bank", "/v1/accounts/AED/statement", {"cursor": "bm90IGEgY3Vyc29y"}, 400),
        ("bank", "/v1/accounts/AED/statement", {"limit": "0"}, 422),
        ("bank", "/v1/accounts", {"bic": "SBININBB"}, 422),  # another bank's
        ("bank", "/v1/accounts", {"bic": "SBININBBXXX"}, 422),
        ("admin", "/v1/accounts", {}, 422),  # admin names the bank
        ("admin", "/v1/accounts", {"bic": "ZZZZAEAD"}, 404),  # a BIC DelTran does not know
        ("admin", "/v1/accounts/AED/statement", {"bic": "ZZZZAEAD"}, 404),
        ("admin", "/v1/accounts", {"bic": "EBILAEAD1"}, 422),
        ("settlement_agent", "/v1/accounts", {}, 403),
        ("settlement_agent", "/v1/accounts/AED/statement", {}, 403),
        (None, "/v1/accounts", {}, 401),
    ],
)
async def test_a_bad_accounts_query_is_refused_clearly(http, credentials, who, path, params, status):
    headers = auth(credentials["banks"]["EBILAEAD"] if who == "bank" else credentials[who]) if who else {}
    response = await http.get(path, params=params, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_bank_with_no_account_in_a_currency_has_an_empty_statement(http, credentials):
    _, key = await new_bank(http, auth(credentials["admin"]), "AE")
    statement = (await http.get("/v1/accounts/EUR/statement", headers=key)).json()
    assert (statement["opening_balance"], statement["closing_balance"], statement["postings"]) == ("0.00", "0.00", [])
    assert (await http.get("/v1/accounts", headers=key)).json() == {"accounts": []}


async def test_a_bank_and_admin_may_name_a_head_office_with_or_without_xxx(http, credentials):
    own = await http.get("/v1/accounts", params={"bic": "EBILAEADXXX"}, headers=auth(credentials["banks"]["EBILAEAD"]))
    admin = await http.get("/v1/accounts", params={"bic": "ebilaeadxxx"}, headers=auth(credentials["admin"]))
    assert own.status_code == admin.status_code == 200 and own.json() == admin.json()


async def _accounts(sessions, bic: str, currency: str = "AED") -> dict[str, uuid.UUID]:
    """The bank's fiat and token account ids in `currency` (created if missing)."""
    async with sessions() as session:
        participant = await session.scalar(text("SELECT id FROM participants WHERE bic = :bic"), {"bic": bic})
        await ledger.ensure_accounts(session, [participant], currency)
        rows = await session.execute(
            text("SELECT kind, id FROM accounts WHERE participant_id = :p AND currency = :c"),
            {"p": participant, "c": currency},
        )
        await session.commit()
        return {r.kind: r.id for r in rows}


async def _post(session, debit, credit, amount: str, kind: str = "fiat_booked") -> None:
    """A posting made directly. Minted fiat comes with the booked, matched camt.054
    entry it mints, as the intake would store it: the books stay reconciled for every
    test after this one (tokens minted = fiat booked)."""
    notification = None
    if kind == "fiat_booked":
        notification = uuid.uuid4()
        message = await session.scalar(
            text(
                "INSERT INTO camt054_messages (id, message_id, body_sha256, body)"
                " VALUES (gen_random_uuid(), 'TEST-DIRECT', repeat('0', 64), '') RETURNING id"
            )
        )
        await session.execute(
            text(
                "INSERT INTO bank_notifications (id, message_row_id, account, entry_reference, tx_index, amount,"
                " currency, credit_debit, entry_status, outcome)"
                " VALUES (:id, :message, 'TEST', :ref, 0, :amount, 'AED', 'CRDT', 'BOOK', 'MATCHED')"
            ),
            {"id": notification, "message": message, "ref": f"TEST-{notification.hex}", "amount": Decimal(amount)},
        )
    await ledger.post_transfer(
        session,
        idempotency_key=f"test-{uuid.uuid4()}",
        debit_account_id=debit,
        credit_account_id=credit,
        amount=Decimal(amount),
        currency="AED",
        kind=kind,
        notification_id=notification,
    )


async def test_a_posting_being_written_is_in_the_next_statement_not_lost(http, sessions, credentials):
    """A posting is timed at its transaction's start and seen at its commit: a statement
    read in between ends before it, so the next one, from that end, has it."""
    bic, key = await new_bank(http, auth(credentials["admin"]), "AE")
    accounts = await _accounts(sessions, bic)
    async with sessions() as writer:
        await _post(writer, accounts["fiat"], accounts["token"], "7.00")
        await asyncio.sleep(1.5)  # well past the statement's margin: only the open transaction holds it back
        first = (await http.get("/v1/accounts/AED/statement", headers=key)).json()
        await writer.commit()
    committed = datetime.now(UTC)
    second = await read_statement(http, key, committed, **{"from": first["to"]})
    assert (first["closing_balance"], first["postings"]) == ("0.00", [])
    assert second["opening_balance"] == first["closing_balance"]
    assert [p["amount"] for p in second["postings"]] == ["7.00"] and second["closing_balance"] == "7.00"


@pytest.fixture
async def busy(http, sessions, credentials):
    """A bank whose token account took seven postings, five of them in one transaction
    (one time): 100 and 30 minted, then 50 minted and 60 paid to another bank, 40 received
    back (one transaction, written debit first), then 5 minted. (bic, key, covering time)."""
    admin = auth(credentials["admin"])
    bic, key = await new_bank(http, admin, "AE")
    other, _ = await new_bank(http, admin, "IN")
    mine, theirs = await _accounts(sessions, bic), await _accounts(sessions, other)
    async with sessions() as session:
        await _post(session, mine["fiat"], mine["token"], "100.00")
        await _post(session, theirs["fiat"], theirs["token"], "40.00")
        await session.commit()
    async with sessions() as session:
        await _post(session, mine["fiat"], mine["token"], "30.00")
        await session.commit()
    async with sessions() as session:
        await _post(session, mine["token"], theirs["token"], "60.00", kind="obligation")
        await _post(session, mine["fiat"], mine["token"], "50.00")
        await _post(session, theirs["token"], mine["token"], "40.00", kind="obligation")
        await session.commit()
    async with sessions() as session:
        await _post(session, mine["fiat"], mine["token"], "5.00")
        await session.commit()
    return bic, key, datetime.now(UTC)


async def test_a_long_statement_comes_in_pages_that_chain(http, busy):
    bic, key, covering = busy
    whole = await read_statement(http, key, covering)
    period = {"from": whole["from"], "to": whole["to"]}
    assert [p["amount"] for p in whole["postings"]][:2] == ["100.00", "30.00"]
    assert (whole["opening_balance"], whole["closing_balance"]) == ("0.00", "165.00")
    # Within one transaction, credits before debits: the running balance never dips below zero.
    running = Decimal(0)
    for posting in whole["postings"]:
        running += Decimal(posting["amount"]) * (1 if posting["direction"] == "CRDT" else -1)
        assert running >= 0, whole["postings"]

    pages, cursor = [], None
    while True:
        params = {**period, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/v1/accounts/AED/statement", params=params, headers=key)).json()
        pages.append(page)
        if (cursor := page["next_cursor"]) is None:
            break
    assert [p["page"] for p in pages] == [1, 2, 3]
    assert [p["id"] for page in pages for p in page["postings"]] == [p["id"] for p in whole["postings"]]
    for page in pages:
        assert (page["opening_balance"], page["closing_balance"]) == ("0.00", "165.00")
        assert _page_balance(page) == Decimal(page["page_closing_balance"])
    for earlier, later in zip(pages, pages[1:], strict=False):
        assert earlier["page_closing_balance"] == later["page_opening_balance"]

    # Pages as camt.053: OPBD on the first, CLBD on the last, ITBD where a page meets the next.
    xml = {**key, "Accept": "application/xml"}
    docs, cursor = [], None
    for page in pages:
        params = {**period, "limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await http.get("/v1/accounts/AED/statement", params=params, headers=xml)
        docs.append(etree.fromstring(response.content))
        cursor = page["next_cursor"]
    for n, (doc, page) in enumerate(zip(docs, pages, strict=True), start=1):
        load_schema("camt.053.001.08").assertValid(doc)
        assert doc.findtext(".//c:Stmt/c:StmtPgntn/c:PgNb", namespaces=NSM) == str(n)
        assert doc.findtext(".//c:Stmt/c:StmtPgntn/c:LastPgInd", namespaces=NSM) == str(n == 3).lower()
        balances = _camt053_balances(doc)
        if n == 1:
            assert set(balances) == {"OPBD", "ITBD"} and balances["OPBD"] == Decimal("0.00")
        elif n == 3:
            assert set(balances) == {"ITBD", "CLBD"} and balances["CLBD"] == Decimal("165.00")
        entries = sum(_camt053_entries(doc), Decimal(0))
        assert Decimal(page["page_opening_balance"]) + entries == Decimal(page["page_closing_balance"])
    assert len({d.findtext(".//c:Stmt/c:Id", namespaces=NSM) for d in docs}) == 1
    assert len({d.findtext(".//c:GrpHdr/c:MsgId", namespaces=NSM) for d in docs}) == 3


async def test_a_cursor_is_for_its_own_account_only(http, busy, credentials):
    bic, key, covering = busy
    first = await read_statement(http, key, covering, limit="2")
    other = await http.get(
        "/v1/accounts/AED/statement",
        params={"cursor": first["next_cursor"]},
        headers=auth(credentials["banks"]["EBILAEAD"]),
    )
    assert other.status_code == 400, other.text
    in_inr = await http.get("/v1/accounts/INR/statement", params={"cursor": first["next_cursor"]}, headers=key)
    assert in_inr.status_code == 400, in_inr.text


def _page_balance(page: dict) -> Decimal:
    moves = (Decimal(p["amount"]) * (1 if p["direction"] == "CRDT" else -1) for p in page["postings"])
    return Decimal(page["page_opening_balance"]) + sum(moves, Decimal(0))


async def test_an_empty_statement_is_valid_camt053(http, credentials):
    _, key = await new_bank(http, auth(credentials["admin"]), "AE")
    response = await http.get("/v1/accounts/USD/statement", headers={**key, "Accept": "application/xml"})
    doc = etree.fromstring(response.content)
    load_schema("camt.053.001.08").assertValid(doc)
    assert _camt053_balances(doc) == {"OPBD": Decimal("0.00"), "CLBD": Decimal("0.00")} and not _camt053_entries(doc)


async def test_a_balance_beyond_camt053_s_digits_is_a_406_and_json_has_it(http, sessions, credentials):
    bic, key = await new_bank(http, auth(credentials["admin"]), "AE")
    accounts = await _accounts(sessions, bic)
    async with sessions() as session:
        for _ in range(2):  # each fits in camt.053's 18 digits, their sum does not
            await _post(session, accounts["fiat"], accounts["token"], "9999999999999999.99")
        await session.commit()
    statement = await read_statement(http, key, datetime.now(UTC))
    assert statement["closing_balance"] == "19999999999999999.98"
    xml = await http.get(
        "/v1/accounts/AED/statement", params={"to": statement["to"]}, headers={**key, "Accept": "application/xml"}
    )
    assert xml.status_code == 406 and xml.headers["content-type"] == "application/problem+json", xml.text


async def test_a_statement_reaching_too_far_back_is_refused_with_a_hint(http, credentials, monkeypatch):
    async def too_far(*args, **kwargs):
        raise statements.TooFarBack

    monkeypatch.setattr(statements, "statement", too_far)
    response = await http.get("/v1/accounts/AED/statement", headers=auth(credentials["banks"]["EBILAEAD"]))
    assert response.status_code == 422 and {e["field"] for e in response.json()["errors"]} == {"from"}


async def test_a_statement_that_reads_too_long_is_cut_off(sessions, monkeypatch):
    """The statement's own timeout is what turns a statement over years of postings into
    TooFarBack (here a read made slow on purpose), not a held connection or a 5xx."""
    slow = str(statements._ACCOUNT.text).replace("WHERE ", "WHERE (SELECT 1 FROM pg_sleep(2)) = 1 AND ", 1)
    monkeypatch.setattr(statements, "_ACCOUNT", text(slow))
    monkeypatch.setattr(statements, "READ_TIMEOUT_MS", 100)
    now = datetime.now(UTC)
    with pytest.raises(statements.TooFarBack):
        await statements.statement(sessions, "EBILAEAD", "AED", now - timedelta(days=1), now)
