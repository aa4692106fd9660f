"""Participants and keys: admin API and `deltran bank`, audited; a suspended bank's new
payments are rejected by compliance."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from cli import main as cli
from deltran.config import get_settings
from deltran.db.tables import AuditLog, Participant
from tests.support.payments import auth, fresh_bic, payment_body, wait_for_status


async def test_admin_adds_a_bank_whose_key_works_once_shown(http, credentials, sessions):
    admin = auth(credentials["admin"])
    bic = fresh_bic()
    created = await http.post("/v1/admin/banks", json={"bic": bic, "name": "Test Bank", "country": "AE"}, headers=admin)
    assert created.status_code == 201, created.text
    key = created.json()["api_key"]
    async with sessions() as session:
        stored = await session.scalar(select(Participant).where(Participant.bic == bic))
    assert stored is not None and key not in (stored.api_key_hash or "")  # only the digest is kept
    listed = await http.get("/v1/admin/banks", headers=admin)
    assert bic in {b["bic"] for b in listed.json()["banks"]}
    # The new bank can call the API with its key; the same BIC again is a conflict.
    missing = await http.get(f"/v1/payments/{uuid.uuid4()}", headers=auth(key))
    assert missing.status_code == 404
    again = await http.post("/v1/admin/banks", json={"bic": bic, "name": "Test Bank", "country": "AE"}, headers=admin)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


async def test_rotating_a_key_retires_the_old_one(http, credentials):
    admin = auth(credentials["admin"])
    bic = fresh_bic("IN")
    old = (
        await http.post("/v1/admin/banks", json={"bic": bic, "name": "Rotating Bank", "country": "IN"}, headers=admin)
    ).json()["api_key"]
    rotated = await http.post(f"/v1/admin/banks/{bic}/rotate-key", headers=admin)
    assert rotated.status_code == 200
    new = rotated.json()["api_key"]
    assert new != old
    assert (await http.get(f"/v1/payments/{uuid.uuid4()}", headers=auth(old))).status_code == 401
    assert (await http.get(f"/v1/payments/{uuid.uuid4()}", headers=auth(new))).status_code == 404


async def test_only_admin_manages_banks(http, credentials):
    for key in (credentials["banks"]["EBILAEAD"], credentials["settlement_agent"]):
        response = await http.get("/v1/admin/banks", headers=auth(key))
        assert response.status_code == 403
    assert (await http.post("/v1/admin/banks/NOSUCHXX/suspend", headers=auth(credentials["admin"]))).status_code == 404


async def test_suspended_bank_payments_are_rejected_and_everything_is_audited(http, credentials, sessions, e2e_id):
    admin = auth(credentials["admin"])
    bic = fresh_bic()
    key = (
        await http.post("/v1/admin/banks", json={"bic": bic, "name": "Suspended Bank", "country": "AE"}, headers=admin)
    ).json()["api_key"]
    suspended = await http.post(f"/v1/admin/banks/{bic}/suspend", headers=admin)
    assert suspended.json()["status"] == "SUSPENDED"
    accepted = await http.post("/v1/payments", json=payment_body(e2e_id, debtor_bic=bic), headers=auth(key))
    assert accepted.status_code == 202
    rejected = await wait_for_status(
        http, accepted.json()["payment_id"], auth(key), {"REJECTED", "AWAITING_SETTLEMENT"}
    )
    assert rejected["status"] == "REJECTED" and rejected["rejection_code"] == "AG01"
    async with sessions() as session:
        actions = set((await session.scalars(select(AuditLog.action).where(AuditLog.subject == bic))).all())
    assert {"bank.add", "bank.suspend"} <= actions


def test_bank_cli_adds_suspends_rotates_and_lists(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DELTRAN_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        bic = fresh_bic("US")
        assert cli.main(["bank", "add", bic, "--name", "CLI Bank", "--country", "us"]) == 0
        assert "shown once" in capsys.readouterr().out
        assert cli.main(["bank", "add", bic, "--name", "CLI Bank", "--country", "US"]) == 1
        assert "already exists" in capsys.readouterr().err
        assert cli.main(["bank", "suspend", bic]) == 0
        assert cli.main(["bank", "rotate-key", bic]) == 0
        capsys.readouterr()
        assert cli.main(["bank", "list"]) == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(bic))
        assert "SUSPENDED" in line and "US" in line
        assert cli.main(["bank", "suspend", "ZZZZZZZZ"]) == 1
    finally:
        get_settings.cache_clear()
