"""Schema-driven fuzzing of the OpenAPI spec (schemathesis): no input may cause a 5xx.

Every operation the API documents is fuzzed by schemathesis in its examples, coverage
(boundary and schema-violating values, unexpected methods and media types) and fuzzing
(positive and negative data) phases, each case sent as one of the roles that may call it
(every role gets its share of each operation's cases); a second pass
sends cases with no key, a garbage key and every role that is not granted, which must
be refused and must not fail either. Random data rarely gets past IBAN/BIC validation,
so in the fuzzing phase three cases in four are steered to where the data is stored: a
payment with real accounts and agents (everything else fuzzed), a new bank (name and
country fuzzed), the run's own bank, payments that exist.

Bounded and reproducible: a fixed seed, derandomized Hypothesis, no example database,
at most `MAX_EXAMPLES` random cases per operation: about 2,200 requests in 10-15 s, far
under the per-caller rate limit. Each test runs every operation as a subtest, reported
by its label (`SUBFAILED ...[POST /v1/payments]`).

The test is synchronous (Hypothesis drives it), so it must not call the API fixture that
lives in the pytest-asyncio session loop, which is idle meanwhile: it runs its own API
server, in a thread with its own event loop, on the suite's PostgreSQL and Temporal. A
small ASGI wrapper counts what that server answers (run with `-s` to see it); a 5xx's
traceback is in the failing test's captured log (uvicorn.error).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schwifty.exceptions import SchwiftyException
from sqlalchemy import select

from activities.clearing import ensure_open_window
from api.main import create_app
from deltran.config import Settings
from deltran.db.tables import Participant, Payment
from deltran.identity import normalize_bic
from deltran.ports import free_port
from tests.support.auditor import SANCTIONED
from tests.support.payments import AE_IBAN, auth, complete_gross_payment, payment_body, wait_for_status
from tests.support.reconciliation import reconcile_intraday

# One process runs the whole module, in order: its API server and bank are set up once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("openapi-fuzz")]

# The spec exactly as the application serves it at /openapi.json (building it needs no server).
SPEC = create_app(Settings()).openapi()

SEED = 20260514
# Random cases per operation: more where a body carries the input, fewer where the only
# input is a path parameter (a payment id, a BIC). The random cases are most of the fuzz's
# CPU (generating them, not sending them): `make test` sends 12 per operation, `make chaos`
# 100 (DELTRAN_FUZZ_EXAMPLES), which found the undocumented 400 of PUT /v1/webhook that 25 did not.
MAX_EXAMPLES = max(1, int(os.environ.get("DELTRAN_FUZZ_EXAMPLES") or 12))
MAX_EXAMPLES_PATH_ONLY = 8
# Access is decided by the key alone (api/deps.py): a few inputs per operation show the
# refusal does not depend on them (each sent two to four ways: no key, a bad key, each role
# not granted).
MAX_EXAMPLES_WITHOUT_ACCESS = 2

BANK_BIC = "EBILAEAD"
CREDITOR_BIC = "SBININBB"
CREDITOR_ACCOUNT = "30001234567"
# This run's own bank: the target of rotate-key/suspend/activate. "FZ…" is no demo BIC.
FUZZ_BIC = "FZ" + "".join(chr(ord("A") + b % 26) for b in uuid.uuid4().bytes[:2]) + "AEAD"

# Who may call what (api/deps.py), and how: each is one request per generated case.
BANK, AGENT, ADMIN = "bank", "settlement_agent", "admin"
# The demo seed's FX provider (a bank too): only in CALLS, so the no-access test never
# sends it where any bank may go.
FX, FX_BIC = "fx_provider", "MASHAEAD"
XML = {"Accept": "application/xml"}
CALLS: dict[str, list[tuple[str | None, dict[str, str]]]] = {
    "POST /v1/payments": [(BANK, {})],
    "GET /v1/payments": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/accounts": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/accounts/{currency}/statement": [(BANK, {}), (ADMIN, {}), (AGENT, {}), (BANK, XML)],
    "GET /v1/payments/{payment_id}": [(BANK, {}), (ADMIN, {}), (AGENT, {}), (BANK, XML)],
    "GET /v1/payments/{payment_id}/pacs002": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/payments/{payment_id}/pacs008": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/payments/{payment_id}/camt054": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/events": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "POST /v1/redemptions": [(BANK, {}), (AGENT, {})],
    "GET /v1/redemptions/{redemption_id}": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/payouts": [(AGENT, {}), (ADMIN, {}), (BANK, {})],
    "POST /v1/payouts/{reference}/refusal": [(AGENT, {}), (BANK, {})],
    # Admin for this run's own bank (steered below): no other test's bank gets a fuzzed webhook.
    "PUT /v1/webhook": [(ADMIN, {}), (AGENT, {})],
    "GET /v1/webhook": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "DELETE /v1/webhook": [(ADMIN, {}), (AGENT, {})],
    "POST /v1/notifications/camt054": [(AGENT, {})],
    "POST /v1/status-requests": [(BANK, {})],
    "GET /v1/track/{uetr}": [(BANK, {})],
    "POST /v1/cancellations": [(BANK, {})],
    "GET /v1/investigations": [(BANK, {})],
    "POST /v1/investigations/{cancellation_id}/reject": [(BANK, {})],
    "POST /v1/investigations/{cancellation_id}/accept": [(BANK, {})],
    "POST /v1/returns": [(BANK, {})],
    "GET /v1/returns/{return_id}": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/returns/{return_id}/pacs004": [(BANK, {})],
    "GET /v1/fx/rates": [(FX, {}), (BANK, {})],
    "PUT /v1/fx/rates": [(FX, {})],
    "POST /v1/fx/quotes": [(BANK, {})],
    "GET /v1/fx/quotes/{quote_id}": [(BANK, {}), (ADMIN, {})],
    # Pairs fuzzed as admin: tests/integration/test_fx.py allows AED/INR again itself.
    "GET /v1/admin/fx/pairs": [(ADMIN, {})],
    "PUT /v1/admin/fx/pairs/{base}/{quote}": [(ADMIN, {})],
    "DELETE /v1/admin/fx/pairs/{base}/{quote}": [(ADMIN, {})],
    "POST /v1/admin/refunds/{reference}/hold": [(ADMIN, {})],
    "POST /v1/admin/refunds/{reference}/release": [(ADMIN, {})],
    "GET /healthz": [(None, {})],
    "GET /v1/admin/banks": [(ADMIN, {})],
    "POST /v1/admin/banks": [(ADMIN, {})],
    "POST /v1/admin/banks/{bic}/rotate-key": [(ADMIN, {})],
    "POST /v1/admin/banks/{bic}/suspend": [(ADMIN, {})],
    "POST /v1/admin/banks/{bic}/activate": [(ADMIN, {})],
    "PUT /v1/admin/banks/{bic}/net-debit-caps/{currency}": [(ADMIN, {})],
    "GET /v1/clearing/windows": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/clearing/windows/latest": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    "GET /v1/clearing/windows/{window_id}": [(BANK, {}), (ADMIN, {}), (AGENT, {})],
    # As admin this closes a window for real: the suite keeps no AED window open, so
    # the spec's example currency finds nothing to close.
    "POST /v1/clearing/windows/close": [(ADMIN, {})],
    "GET /v1/reconciliations/latest": [(ADMIN, {})],
    "GET /v1/admin/circuit-breakers": [(ADMIN, {})],
    # Closing refuses (409) while a currency's backing does not reconcile.
    "POST /v1/admin/circuit-breakers/{currency}/close": [(ADMIN, {})],
}
ROLES = (BANK, AGENT, ADMIN)
# No 5xx, and the answers are what the spec documents: status codes, media types
# (every error is application/problem+json), body schemas and headers.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _config(max_examples: int, *, coverage: bool, path_only_examples: int | None = None) -> schemathesis.Config:
    path_only = [
        {"include-method": "GET", "generation": {"max-examples": path_only_examples}},
        {"include-path-regex": r"\{bic\}", "generation": {"max-examples": path_only_examples}},
    ]
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "operations": path_only if path_only_examples else [],
            "suppress-health-check": ["all"],
            "generation": {
                "mode": "all",  # positive and negative (schema-violating) data
                "max-examples": max_examples,
                "deterministic": True,  # Hypothesis derandomize
                "database": "none",  # nothing written to .hypothesis/
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": coverage},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    )


schema = schemathesis.openapi.from_dict(
    SPEC, config=_config(MAX_EXAMPLES, coverage=True, path_only_examples=MAX_EXAMPLES_PATH_ONLY)
)
schema_without_access = schemathesis.openapi.from_dict(
    SPEC, config=_config(MAX_EXAMPLES_WITHOUT_ACCESS, coverage=False)
)

# Payments that exist when the run starts (filled in by the fixture): where some of the
# generated payment ids are pointed.
EXISTING_PAYMENTS: list[str] = []


def _digest(value: object) -> bytes:
    return hashlib.sha256(repr(value).encode()).digest()


def _is_uetr(value: object) -> bool:
    try:
        return isinstance(value, str) and str(uuid.UUID(value)) == value and uuid.UUID(value).version == 4
    except ValueError:
        return False


def _reachable(case):
    """Steer a generated case past the validation random data rarely passes, keeping the
    rest of it as generated."""
    label = case.operation.label
    if label == "POST /v1/payments" and case.media_type == "application/json" and isinstance(case.body, dict):
        debtor = case.body.get("debtor") if isinstance(case.body.get("debtor"), dict) else {}
        creditor = case.body.get("creditor") if isinstance(case.body.get("creditor"), dict) else {}
        uetr = case.body.get("uetr")
        case.body = {
            **{k: v for k, v in case.body.items() if k != "uetr" or _is_uetr(uetr)},
            "currency": "AED",
            "debtor": {"name": debtor.get("name", "Al Noor Trading LLC"), "iban": AE_IBAN, "agent_bic": BANK_BIC},
            "creditor": {
                "name": creditor.get("name", "Ganesh Textiles Pvt Ltd"),
                "account": CREDITOR_ACCOUNT,
                "agent_bic": CREDITOR_BIC,
            },
        }
    elif label == "POST /v1/admin/banks" and isinstance(case.body, dict):
        letters = "".join(chr(ord("A") + b % 26) for b in _digest(case.body)[:2])
        case.body = {**case.body, "bic": f"FY{letters}AEAD"}  # a new bank; name and country as generated
    elif label in ("PUT /v1/webhook", "DELETE /v1/webhook"):
        case.query = {**(case.query or {}), "bic": FUZZ_BIC}
    elif "{bic}" in label:
        case.path_parameters = {**(case.path_parameters or {}), "bic": FUZZ_BIC}
    elif "{payment_id}" in label and EXISTING_PAYMENTS:
        chosen = EXISTING_PAYMENTS[_digest(case.path_parameters)[0] % len(EXISTING_PAYMENTS)]
        case.path_parameters = {**(case.path_parameters or {}), "payment_id": chosen}
    return case


def before_generate_case(context, strategy):
    """Three cases in four steered, one left as generated (in the fuzzing phase; the
    examples and coverage phases send what the schema alone gives)."""
    return st.tuples(strategy, st.integers(0, 3)).map(lambda drawn: drawn[0] if drawn[1] == 3 else _reachable(drawn[0]))


schema.hook(before_generate_case)
schema_without_access.hook(before_generate_case)


class _Recorder:
    """ASGI wrapper: counts the requests the server answers, by status."""

    def __init__(self, app) -> None:
        self.app = app
        self.statuses: Counter[int] = Counter()
        self.server_errors: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def recording_send(message) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
                if message["status"] >= 500:
                    self.server_errors.append(f"{message['status']} {scope['method']} {scope['path']}")
            await send(message)

        await self.app(scope, receive, recording_send)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


class _ThreadedServer:
    """uvicorn in its own thread and event loop (it installs no signal handlers there)."""

    def __init__(self, app, port: int) -> None:
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, name="openapi-fuzz-api", daemon=True)

    def __enter__(self) -> _ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "the fuzz API failed to start"
            assert time.monotonic() < deadline, "the fuzz API did not start within 30 s"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the fuzz API did not stop within 30 s"


@dataclass
class FuzzApi:
    url: str
    keys: dict[str, str]
    seeded_bics: frozenset[str]
    recorder: _Recorder
    session: requests.Session = field(default_factory=requests.Session)

    def headers(self, role: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
        auth = {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}
        return {**auth, **(extra or {})}

    def keep_seeded_banks_safe(self, case) -> None:
        """Rotating the key of (or suspending) a bank the other tests use would break
        them: such a case goes to this run's own bank instead."""
        if "{bic}" not in case.operation.path:
            return
        bic = (case.path_parameters or {}).get("bic")
        try:
            normalized = normalize_bic(bic) if isinstance(bic, str) else None
        except (SchwiftyException, ValueError):
            return
        if normalized in self.seeded_bics:
            case.path_parameters = {**case.path_parameters, "bic": FUZZ_BIC}

    def call(self, case, role: str | None, extra: dict[str, str] | None = None):
        return case.call_and_validate(
            base_url=self.url, session=self.session, headers=self.headers(role, extra), checks=CHECKS, timeout=30
        )


async def _make_readable_state(api_url: str, sessions, credentials, settings, temporal_env) -> None:
    """What the read operations should find whatever ran before in this test process: a
    payment completed, one rejected and one awaiting settlement, a settled clearing window
    and a reconciliation run."""
    bank = auth(credentials["banks"][BANK_BIC])
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        waiting = {}
        for status, creditor in (("REJECTED", SANCTIONED), ("AWAITING_SETTLEMENT", "Ganesh Textiles Pvt Ltd")):
            body = payment_body(f"FUZZ-{uuid.uuid4().hex[:12]}", amount="1000.00", creditor_name=creditor)
            accepted = await http.post("/v1/payments", json={**body, "urgent": True}, headers=bank)
            assert accepted.status_code == 202, accepted.text
            waiting[accepted.json()["payment_id"]] = status
        await complete_gross_payment(http, credentials, "1000.00", prefix="FUZZ")
        for payment_id, status in waiting.items():
            await wait_for_status(http, payment_id, bank, {status})
        async with sessions() as session, session.begin():
            await ensure_open_window(session, "EUR")  # empty: closing it settles it at once
        closed = await http.post(
            "/v1/clearing/windows/close", params={"currency": "EUR"}, headers=auth(credentials["admin"])
        )
        assert closed.is_success and closed.json()["status"] == "SETTLED", closed.text
    result = await reconcile_intraday(sessions, temporal_env.client, settings, by="openapi-fuzz")
    assert result.ok, result


@pytest.fixture(scope="module")
async def _database_state(api_url, sessions, credentials, settings, temporal_env) -> tuple[frozenset[str], list[str]]:
    """The banks that exist (never to be rotated or suspended by the fuzzer) and a few
    payments in each status (to read)."""
    await _make_readable_state(api_url, sessions, credentials, settings, temporal_env)
    async with sessions() as session:
        bics = frozenset((await session.scalars(select(Participant.bic))).all())
        recent = (
            await session.execute(select(Payment.status, Payment.id).order_by(Payment.created_at.desc()).limit(500))
        ).all()
    payments = {}
    for status, payment_id in recent:
        payments.setdefault(status, str(payment_id))
    return bics, list(payments.values())


@pytest.fixture(scope="module")
async def _numbering_paused(numbering):
    """The fuzz runs synchronously, with the session's event loop idle: numbering pauses
    for it, so no round is caught holding the numberer's lock that the fuzzed webhook
    calls take (tests/conftest.py, Numbering)."""
    await numbering.pause()
    yield
    numbering.resume()


@pytest.fixture(scope="module")
def fuzz_api(settings, credentials, _database_state, _numbering_paused):
    seeded_bics, payments = _database_state
    recorder = _Recorder(create_app(settings))
    keys = {
        BANK: credentials["banks"][BANK_BIC],
        AGENT: credentials["settlement_agent"],
        ADMIN: credentials["admin"],
        FX: credentials["fx_providers"][FX_BIC],
    }
    with _ThreadedServer(recorder, free_port()) as server:
        api = FuzzApi(url=f"http://127.0.0.1:{server.port}", keys=keys, seeded_bics=seeded_bics, recorder=recorder)
        with api.session:
            created = api.session.post(
                f"{api.url}/v1/admin/banks",
                json={"bic": FUZZ_BIC, "name": "Fuzz Bank", "country": "AE"},
                headers=api.headers(ADMIN),
                timeout=30,
            )
            assert created.status_code == 201, created.text
            accepted = api.session.post(
                f"{api.url}/v1/payments",
                json=payment_body(f"FUZZ-{uuid.uuid4().hex[:16]}"),
                headers=api.headers(BANK),
                timeout=30,
            )
            assert accepted.status_code == 202, accepted.text
            EXISTING_PAYMENTS[:] = [accepted.json()["payment_id"], *payments]
            started = time.monotonic()
            yield api
            unsent = [
                (label, role, extra)
                for label in _TURNS
                for role, extra in CALLS[label]
                if (label, role, tuple(sorted(extra.items()))) not in _SENT
            ]
            assert not unsent, f"callers sent no case: {unsent}"
            print(
                f"\nOpenAPI fuzz: {recorder.requests} requests in {time.monotonic() - started:.1f} s,"
                f" statuses {dict(sorted(recorder.statuses.items()))}"
                + (f", server errors {recorder.server_errors}" if recorder.server_errors else "")
            )


# Each operation's cases take its callers in turn (the cases come in a fixed order, so a
# run is reproducible), and each (role, headers) is recorded: the module checks at its end
# that every caller of every operation fuzzed was sent cases.
_TURNS: defaultdict[str, itertools.count] = defaultdict(itertools.count)
_SENT: set[tuple[str, str | None, tuple[tuple[str, str], ...]]] = set()


# The cases are built when a test runs, in the one test process that runs this module:
# built at collection, as `schema.parametrize()` does, every process of `make test` would
# spend some two seconds of CPU generating the coverage phase's cases of every operation.
@pytest.fixture(scope="module")
def _schema():
    return schema


@pytest.fixture(scope="module")
def _schema_without_access():
    return schema_without_access


@schemathesis.pytest.from_fixture("_schema").parametrize()
def test_no_input_causes_a_server_error(case, fuzz_api: FuzzApi):
    """Each case as one of the roles that may call the operation, in turn: every role
    (and media type) gets its share of the operation's cases, at a third of the requests
    of sending each case as every role."""
    fuzz_api.keep_seeded_banks_safe(case)
    label = case.operation.label
    role, extra = CALLS[label][next(_TURNS[label]) % len(CALLS[label])]
    _SENT.add((label, role, tuple(sorted(extra.items()))))
    fuzz_api.call(case, role, extra)


@schemathesis.pytest.from_fixture("_schema_without_access").parametrize()
def test_no_access_without_the_right_key(case, fuzz_api: FuzzApi):
    """No key, a garbage key, or a role the operation does not grant: refused (never a
    2xx or 3xx), and never a 5xx either."""
    permitted = {role for role, _ in CALLS[case.operation.label]}
    if None in permitted:
        pytest.skip("a public operation")
    fuzz_api.keep_seeded_banks_safe(case)
    # The generated case may carry an Authorization header of its own (the spec names
    # a bearer scheme): the first attempt sends none at all.
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    attempts: list[tuple[str | None, dict[str, str]]] = [
        (None, {}),
        (None, {"Authorization": "Bearer not-a-key"}),
    ]
    attempts += [(role, {}) for role in ROLES if role not in permitted]
    for role, extra in attempts:
        response = fuzz_api.call(case, role, extra)
        assert response.status_code >= 400, (
            f"{case.operation.label} answered {response.status_code} to {role or extra.get('Authorization', 'no key')}"
        )
