"""Every bad or hostile request ends in a clear 4xx problem document that names the
field, and nothing is written."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from api.main import create_app
from deltran.db.tables import AuditLog, Camt054Message, Payment
from deltran.iso20022.pacs008 import Pacs008Spec, build_pacs008
from deltran.ports import free_port
from tests.support.payments import AE_IBAN, auth, payment_body

XXE = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Document>&x;</Document>'
LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><Document>&lol3;</Document>'
)


def valid_pacs008(e2e: str, **overrides) -> bytes:
    fields = dict(
        end_to_end_id=e2e,
        amount=Decimal("10.00"),
        currency="AED",
        debtor_name="Al Noor Trading LLC",
        debtor_agent_bic="EBILAEAD",
        debtor_iban=AE_IBAN,
        creditor_name="Ganesh Textiles Pvt Ltd",
        creditor_agent_bic="SBININBB",
        creditor_account="30001234567",
    )
    fields.update(overrides)
    return build_pacs008(
        [Pacs008Spec(**fields)], message_id=f"M-{uuid.uuid4().hex[:16]}", instructing_agent_bic="EBILAEAD"
    )


def tamper(xml: bytes, old: str, new: str) -> bytes:
    assert old.encode() in xml, old
    return xml.replace(old.encode(), new.encode(), 1)


async def written(sessions) -> tuple[int, int, int]:
    async with sessions() as session:
        return tuple(
            [await session.scalar(select(func.count()).select_from(m)) for m in (Payment, Camt054Message, AuditLog)]
        )


def json_cases(e2e: str) -> dict[str, tuple[dict, str]]:
    """name → (body, the field the problem must name)."""
    base = payment_body(e2e)

    def with_(path: str, value) -> dict:
        body = {**base, "debtor": dict(base["debtor"]), "creditor": dict(base["creditor"])}
        *parents, leaf = path.split(".")
        target = body
        for p in parents:
            target = target[p]
        target[leaf] = value
        return body

    missing_name = with_("debtor.name", None)
    del missing_name["debtor"]["name"]
    return {
        "negative amount": (with_("amount", "-5.00"), "amount"),
        "zero amount": (with_("amount", "0.00"), "amount"),
        "float amount": (with_("amount", 10.5), "amount"),
        "too many decimals": (with_("amount", "10.001"), "amount"),
        "unknown currency": (with_("currency", "XXX"), "currency"),
        "invalid IBAN": (with_("debtor.iban", "AE070331234567890123457"), "debtor.iban"),
        "invalid BIC": (with_("creditor.agent_bic", "NOTABIC!"), "creditor.agent_bic"),
        "EndToEndId too long": (with_("end_to_end_id", "E" * 36), "end_to_end_id"),
        "uppercase UETR": (with_("uetr", str(uuid.uuid4()).upper()), "uetr"),
        "non-v4 UETR": (with_("uetr", str(uuid.uuid1())), "uetr"),
        "missing debtor name": (missing_name, "debtor.name"),
        "unknown field": (with_("debtor.nickname", "x"), "debtor.nickname"),
        "NUL in a name": (with_("debtor.name", "Al Noor\u0000 Trading"), "debtor.name"),
        "control character in remittance": (with_("remittance_info", "Invoice\u001b[2J"), "remittance_info"),
    }


async def test_bad_json_payments(http, credentials, sessions, e2e_id):
    bank = auth(credentials["banks"]["EBILAEAD"])
    before = await written(sessions)
    for name, (body, field) in json_cases(e2e_id).items():
        response = await http.post("/v1/payments", json=body, headers=bank)
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        problem = response.json()
        assert problem["status"] == 422 and problem["title"] and problem["type"].startswith("urn:deltran:problem:")
        assert field in {e["field"] for e in problem["errors"]}, (name, problem)
    not_json = await http.post(
        "/v1/payments", content=b"{not json", headers={**bank, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422
    latin1 = await http.post(
        "/v1/payments",
        content='{"end_to_end_id": "é"}'.encode("latin-1"),
        headers={**bank, "Content-Type": "application/json"},
    )
    assert latin1.status_code == 422
    assert await written(sessions) == before


async def test_bad_and_hostile_pacs008(http, credentials, sessions, e2e_id):
    bank = {**auth(credentials["banks"]["EBILAEAD"]), "Content-Type": "application/xml"}
    good = valid_pacs008(e2e_id)
    uetr = str(uuid.uuid4())
    with_uetr = valid_pacs008(e2e_id, uetr=uetr)
    cases = {
        "XXE": XXE,
        "billion laughs": LAUGHS,
        "broken XML": good[:-40],
        "wrong namespace": tamper(good, "pacs.008.001.08", "pacs.008.001.09"),
        "wrong message type": tamper(
            good, "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08", "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"
        ),
        "ISO-8859-1": tamper(good, 'encoding="UTF-8"', 'encoding="ISO-8859-1"') if b'encoding="UTF-8"' in good else XXE,
        "UTF-16": good.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
        "missing debtor name": tamper(good, "<Nm>Al Noor Trading LLC</Nm>", ""),
        "negative amount": tamper(good, ">10.00<", ">-10.00<"),
        "zero amount": tamper(good, ">10.00<", ">0.00<"),
        "too many decimals": tamper(good, ">10.00<", ">10.001<"),
        "unknown currency": tamper(good, 'Ccy="AED"', 'Ccy="XXX"'),
        "uppercase UETR": tamper(with_uetr, uetr, uetr.upper()),
        "non-v4 UETR": tamper(with_uetr, uetr, str(uuid.uuid1())),
        "invalid IBAN": tamper(good, AE_IBAN, "AE070331234567890123457"),
        "invalid BIC": tamper(good, "SBININBB", "SBIN1NBB"),
        "EndToEndId too long": tamper(good, e2e_id, "E" * 36),
    }
    before = await written(sessions)
    for name, body in cases.items():
        response = await http.post("/v1/payments", content=body, headers=bank)
        assert response.status_code == 400, (name, response.status_code, response.text)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json", name
        assert problem["errors"] and all(e["field"] and e["message"] for e in problem["errors"]), (name, problem)
    assert await written(sessions) == before


async def test_hostile_camt054(http, credentials, sessions):
    agent = {**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"}
    before = await written(sessions)
    for body in (XXE, LAUGHS, b"<not-closed>", b"<Document xmlns='urn:other'/>"):
        response = await http.post("/v1/notifications/camt054", content=body, headers=agent)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
    wrong_type = await http.post(
        "/v1/notifications/camt054", content=b"{}", headers={**agent, "Content-Type": "application/json"}
    )
    assert wrong_type.status_code == 415
    assert await written(sessions) == before


async def test_oversized_body_is_413(http, credentials, settings):
    agent = {**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"}
    response = await http.post(
        "/v1/notifications/camt054", content=b"<a>" + b"x" * settings.max_body_bytes + b"</a>", headers=agent
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


@pytest.fixture
async def slow_api(settings, worker, credentials):
    """A second API on the same servers with a tiny rate limit."""
    limited = settings.model_copy(update={"rate_limit_per_s": 0.5, "rate_limit_burst": 2})
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(limited), host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client
    server.should_exit = True
    await task


async def test_rate_limit_is_per_bank_with_retry_after(slow_api, credentials):
    first, second = auth(credentials["banks"]["EBILAEAD"]), auth(credentials["banks"]["SBININBB"])
    codes = [(await slow_api.get(f"/v1/payments/{uuid.uuid4()}", headers=first)).status_code for _ in range(2)]
    assert codes == [404, 404]
    limited = await slow_api.get(f"/v1/payments/{uuid.uuid4()}", headers=first)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["content-type"] == "application/problem+json"
    assert (await slow_api.get(f"/v1/payments/{uuid.uuid4()}", headers=second)).status_code == 404
