"""Authentication, authorisation and bad input: a clear 4xx, and nothing changes."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from deltran.db.tables import Camt054Message, Payment
from tests.support.payments import auth, camt054_for, payment_body


async def count(sessions, model) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_requests_without_a_valid_key_are_401(http, e2e_id):
    assert (await http.post("/v1/payments", json=payment_body(e2e_id))).status_code == 401
    wrong = await http.post("/v1/payments", json=payment_body(e2e_id), headers=auth("not-a-key"))
    assert wrong.status_code == 401


async def test_bank_cannot_submit_as_another_bank(http, credentials, sessions, e2e_id):
    before = await count(sessions, Payment)
    response = await http.post(
        "/v1/payments", json=payment_body(e2e_id), headers=auth(credentials["banks"]["HDFCINBB"])
    )
    assert response.status_code == 403
    assert await count(sessions, Payment) == before


async def test_bank_cannot_read_other_banks_payment(http, credentials, e2e_id):
    accepted = await http.post(
        "/v1/payments", json=payment_body(e2e_id), headers=auth(credentials["banks"]["EBILAEAD"])
    )
    payment_id = accepted.json()["payment_id"]
    outsider = await http.get(f"/v1/payments/{payment_id}", headers=auth(credentials["banks"]["CHASUS33"]))
    assert outsider.status_code == 404
    admin = await http.get(f"/v1/payments/{payment_id}", headers=auth(credentials["admin"]))
    assert admin.status_code == 200


async def test_only_the_settlement_agent_posts_camt054(http, credentials, sessions, e2e_id):
    before = await count(sessions, Camt054Message)
    response = await http.post(
        "/v1/notifications/camt054",
        content=camt054_for(e2e_id, entry_reference=e2e_id),
        headers={**auth(credentials["banks"]["EBILAEAD"]), "Content-Type": "application/xml"},
    )
    assert response.status_code == 403
    assert await count(sessions, Camt054Message) == before


async def test_healthz_reports_both_dependencies(http):
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "temporal": "ok"}


async def test_authorisation_matrix(http, credentials, e2e_id):
    """Who may call what: each role gets through where it should and 403 elsewhere;
    a bank never sees another bank's payment (404, as if it did not exist)."""
    roles = {
        "sender": credentials["banks"]["EBILAEAD"],
        "receiver": credentials["banks"]["SBININBB"],
        "outsider": credentials["banks"]["CITIUS33"],
        "settlement_agent": credentials["settlement_agent"],
        "admin": credentials["admin"],
    }
    payment_id = (await http.post("/v1/payments", json=payment_body(e2e_id), headers=auth(roles["sender"]))).json()[
        "payment_id"
    ]
    reads = {"sender": 200, "receiver": 200, "outsider": 404, "settlement_agent": 403, "admin": 200}
    for role, expected in reads.items():
        for path in (f"/v1/payments/{payment_id}", f"/v1/payments/{payment_id}/pacs002"):
            response = await http.get(path, headers=auth(roles[role]))
            assert response.status_code == expected, (role, path, response.text)
    writes = [
        ("POST", "/v1/payments", {"sender", "receiver", "outsider"}),
        ("POST", "/v1/notifications/camt054", {"settlement_agent"}),
        ("GET", "/v1/admin/banks", {"admin"}),
        ("POST", "/v1/admin/banks/EBILAEAD/suspend", {"admin"}),
    ]
    for method, path, allowed in writes:
        for role, key in roles.items():
            if role in allowed:
                continue
            response = await http.request(
                method, path, headers={**auth(key), "Content-Type": "application/json"}, content=b"{}"
            )
            assert response.status_code == 403, (role, method, path, response.status_code)
    # As the sender, submitting in the name of another bank is refused too.
    as_other = await http.post(
        "/v1/payments", json=payment_body(f"{e2e_id}-X", debtor_bic="SBININBB"), headers=auth(roles["sender"])
    )
    assert as_other.status_code == 403


async def test_metrics_count_requests_by_route_template(http, credentials):
    await http.get(f"/v1/payments/{uuid.uuid4()}", headers=auth(credentials["admin"]))
    text = (await http.get("/metrics")).text
    assert 'route="/v1/payments/{payment_id}"' in text and 'status="404"' in text


async def test_a_body_that_is_not_json_is_refused_as_documented_everywhere(http, credentials):
    """Every operation taking a JSON body refuses bytes that are not JSON at all with a
    400 or 422 problem document, and documents that status: clients generated from the
    spec rely on it (PUT /v1/webhook's 400 was missing)."""
    spec = (await http.get("/openapi.json")).json()
    operations = [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]
    assert operations
    keys = [
        credentials["admin"],
        credentials["settlement_agent"],
        credentials["banks"]["EBILAEAD"],
        *credentials["fx_providers"].values(),
    ]
    for method, path, op in operations:
        url = path.replace("{", "").replace("}", "")  # every path parameter named after itself
        # Most operations refuse the body before they look at the key; the others (the
        # payment, recall and return intakes) check the role first: try each in turn.
        for key in keys:
            response = await http.request(
                method, url, content=b"\x1b\xff{", headers={**auth(key), "Content-Type": "application/json"}
            )
            if response.status_code != 403:
                break
        assert response.status_code in (400, 422), (method, path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), (method, path)
        assert str(response.status_code) in op["responses"], (method, path, sorted(op["responses"]))
