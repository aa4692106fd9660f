"""The deploy artefacts: docker-compose.yml, the Prometheus config and alert rules (with
their promtool unit tests) and the four Grafana dashboards — and every dashboard query,
run by a real Prometheus against the test API's /metrics after a small demo run.

The API and the in-process worker share one process here, so the API's /metrics carries
the worker's deltran_ metrics too (prometheus_client's registry is process-global).
Panels marked "SDK-only" in their description query only the Temporal SDK's temporal_*
worker metrics, which the test worker does not export; they are checked for that, not for
data.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from activities.clearing import ensure_open_window
from deltran.iso20022.camt054 import BookingSpec, build_camt054
from deltran.observability import metrics
from deltran.ports import free_port
from deltran.shared import ClearingInput
from deltran.temporal import search_attributes
from tests.support.payments import auth, camt054_for, complete_gross_payment, payment_body, wait_for_status
from tests.support.reconciliation import reconcile_intraday
from tests.support.webhook_receiver import Receiver
from workflows.clearing import ClearingWindowWorkflow

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
DASHBOARD_DIR = REPO / "deploy" / "grafana" / "dashboards"
DASHBOARDS = ("system-overview", "clearing", "tokens", "settlement")
SDK_ONLY = "SDK-only"
ALERTS = {
    "DeltranHighErrorRate",
    "DeltranHighLatencyP95",
    "DeltranCircuitBreakerOpen",
    "DeltranReconciliationBreak",
    "DeltranClearingWindowStale",
    "DeltranStepFailedPermanently",
    "DeltranStepFailing",
    "DeltranWebhookEndpointFailing",
    "DeltranWebhookEventsGivenUp",
}

# What Grafana would put in for its variables when the test runs a panel's query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "10m",
    "${currency}": ".*",
    "$currency": ".*",
}
SCRAPE_INTERVAL_S = 1
# Every event counter exists at 0 from the worker's start (metrics.initialise), breaks and
# breaker trips included; deltran_circuit_breaker_open is a gauge set only for a currency
# with a breaker record, i.e. after its first trip (tokens.json falls back to CLOSED for
# every reconciled currency): absent rather than a guessed 0 after a restart.
ONLY_ON_FAILURE = {"deltran_circuit_breaker_open"}
METRIC_NAME = re.compile(r"\b((?:deltran|temporal)_[a-zA-Z0-9_]+)")


def _tool(name: str) -> str | None:
    found = shutil.which(name) or f"/usr/bin/{name}"
    return found if Path(found).exists() else None


def _require(name: str, package: str) -> str:
    tool = _tool(name)
    if tool is None:
        pytest.skip(f"{name} not installed (Debian package '{package}'; .ci/run installs it)")
    return tool


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120)


def contract_metric_names() -> set[str]:
    """Every series name deltran/observability/metrics.py exposes (Counter: _total; Histogram:
    _bucket/_sum/_count), the names dashboards and rules may use."""
    names: set[str] = set()
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        base, kind = collector._name, collector._type
        if kind == "counter":
            names.add(f"{base}_total")
        elif kind == "histogram":
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
        else:
            names.add(base)
    return names


def dashboard_panels() -> list[tuple[str, dict]]:
    """(dashboard, panel) for every non-row panel, rows' nested panels included."""
    found = []
    for name in DASHBOARDS:
        board = json.loads((DASHBOARD_DIR / f"{name}.json").read_text())
        stack = list(board["panels"])
        while stack:
            panel = stack.pop(0)
            if panel.get("type") == "row":
                stack[:0] = panel.get("panels", [])
            else:
                found.append((name, panel))
    return found


def is_sdk_only(panel: dict) -> bool:
    return SDK_ONLY in panel.get("description", "")


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


# -- static checks ---------------------------------------------------------------------------


def test_compose_file_is_valid_and_wires_the_stack():
    tool = _require("docker-compose", "docker-compose")
    checked = _run(tool, "-f", str(COMPOSE_FILE), "config", "-q")
    assert checked.returncode == 0, checked.stderr
    resolved = _run(tool, "-f", str(COMPOSE_FILE), "config")
    assert resolved.returncode == 0, resolved.stderr
    services = yaml.safe_load(resolved.stdout)["services"]
    assert {
        "postgres",
        "temporal",
        "temporal-search-attributes",
        "temporal-ui",
        "migrate",
        "api",
        "worker",
        "prometheus",
        "grafana",
    } <= set(services)
    # The worker scales (`--scale worker=N`): no fixed name, no host port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    assert services["api"]["environment"]["DELTRAN_API_HOST"] == "0.0.0.0"
    for role in ("api", "worker", "migrate"):
        env = services[role]["environment"]
        assert env["DELTRAN_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["DELTRAN_TEMPORAL_ADDRESS"] == "temporal:7233"
    for role in ("api", "worker"):
        assert (
            services[role]["depends_on"]["temporal-search-attributes"]["condition"] == "service_completed_successfully"
        )
        assert services[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Exactly DelTran's search attributes, with their types.
    script = services["temporal-search-attributes"]["command"][0]
    registered = dict(re.findall(r"\b([A-Z][A-Za-z]+):(Keyword|Double)\b", script))
    kinds = {"KEYWORD": "Keyword", "DOUBLE": "Double"}
    assert registered == {k.name: kinds[k.indexed_value_type.name] for k in search_attributes.ALL_KEYS}


def test_prometheus_config_alert_rules_and_their_unit_tests():
    promtool = _require("promtool", "prometheus")
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),
    ):
        result = _run(promtool, *args, cwd=PROMETHEUS_DIR)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    assert set(alerts) == ALERTS
    for name, expr in alerts.items():
        assert set(METRIC_NAME.findall(expr)) <= contract_metric_names(), name
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for alert in ALERTS:  # each alert has a firing and a not-firing case
        assert any(c["alertname"] == alert and c["exp_alerts"] for c in cases), f"{alert} never tested firing"
        assert any(c["alertname"] == alert and not c["exp_alerts"] for c in cases), f"{alert} never tested quiet"


def test_dashboards_parse_and_every_panel_queries_the_contract():
    contract = contract_metric_names()
    for name in DASHBOARDS:
        board = json.loads((DASHBOARD_DIR / f"{name}.json").read_text())
        assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        for variable in variables.values():
            if variable["type"] == "query":
                assert set(METRIC_NAME.findall(variable["definition"])) <= contract, variable
    panels = dashboard_panels()
    assert len(panels) >= 4 * 6
    for board, panel in panels:
        where = f"{board}: {panel['title']!r}"
        assert panel["datasource"]["uid"] in ("${datasource}", "prometheus"), where
        exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
        assert exprs and all(exprs), f"{where} has a target without a PromQL expr"
        used = {m for e in exprs for m in METRIC_NAME.findall(e)}
        assert used, f"{where} queries no metric"
        if is_sdk_only(panel):
            assert all(m.startswith("temporal_") for m in used), f"{where} is SDK-only but queries {used}"
        else:
            assert used <= contract, (
                f"{where} queries metrics outside deltran/observability/metrics.py: {used - contract}"
            )


# -- a real Prometheus over a demo run -------------------------------------------------------

EU_ACCOUNTS = {
    "DEUTDEFF": {"iban": "DE89370400440532013000"},
    "BNPAFRPP": {"iban": "FR1420041010050500013M02606"},
    "INGBNL2A": {"iban": "NL91ABNA0417164300"},
}


def eur_payment(e2e: str, payer: str, payee: str, amount: str) -> dict:
    def party(bic: str) -> dict:
        return {"name": f"Customer of {bic}", **EU_ACCOUNTS[bic], "agent_bic": bic}

    return {"end_to_end_id": e2e, "amount": amount, "currency": "EUR", "debtor": party(payer), "creditor": party(payee)}


class Demo:
    """Traffic through the API: gross AED payments settled by camt.054, a sanctions
    rejection, and a EUR clearing window closed and funded (once after a fallback);
    then an intraday reconciliation."""

    def __init__(self, http, credentials, sessions, temporal_env, settings):
        self.http, self.credentials, self.sessions = http, credentials, sessions
        self.temporal_env, self.settings = temporal_env, settings
        self.agent = {**auth(credentials["settlement_agent"]), "Content-Type": "application/xml"}
        self.admin = auth(credentials["admin"])

    def bank(self, bic: str) -> dict:
        return auth(self.credentials["banks"][bic])

    async def post_camt054(self, xml: bytes) -> dict:
        response = await self.http.post("/v1/notifications/camt054", content=xml, headers=self.agent)
        assert response.status_code == 200, response.text
        return response.json()

    async def gross_payment(self, amount: str) -> None:
        await complete_gross_payment(self.http, self.credentials, amount, prefix="DEP")

    async def rejected_payment(self) -> None:
        body = payment_body(f"DEP-{uuid.uuid4().hex[:12]}", creditor_name="Viktor Blacklistov")
        accepted = await self.http.post("/v1/payments", json=body, headers=self.bank("EBILAEAD"))
        assert accepted.status_code == 202, accepted.text
        state = await wait_for_status(
            self.http,
            accepted.json()["payment_id"],
            self.bank("EBILAEAD"),
            {"REJECTED", "AWAITING_SETTLEMENT", "COMPLETED"},
        )
        assert state["status"] == "REJECTED", state

    async def net_payments(self, specs) -> list[tuple[str, str]]:
        tag = uuid.uuid4().hex[:8]
        responses = await asyncio.gather(
            *(
                self.http.post(
                    "/v1/payments", json=eur_payment(f"DEPN{tag}-{i}", payer, payee, amount), headers=self.bank(payer)
                )
                for i, (payer, payee, amount) in enumerate(specs)
            )
        )
        assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
        ids = [(r.json()["payment_id"], payer) for r, (payer, _, _) in zip(responses, specs, strict=True)]
        for payment_id, payer in ids:
            state = await wait_for_status(self.http, payment_id, self.bank(payer), {"AWAITING_SETTLEMENT"})
            assert state["obligation"]["settlement_mode"] == "NET", state["obligation"]
        return ids

    async def fallback_window(self) -> list[tuple[str, str]]:
        """A window whose net debtor never funds: the fallback rolls its obligations on."""
        ids = await self.net_payments([("DEUTDEFF", "BNPAFRPP", "700.00"), ("DEUTDEFF", "BNPAFRPP", "300.00")])
        handle = await self.temporal_env.client.start_workflow(
            ClearingWindowWorkflow.run,
            ClearingInput(currency="EUR", funding_timeout_s=1),
            id=f"clearing-EUR-deploy-{uuid.uuid4().hex[:8]}",
            task_queue=self.settings.task_queue,
        )
        await asyncio.wait_for(handle.result(), timeout=60)
        return ids

    async def net_window(self, *, with_fallback: bool) -> None:
        async with self.sessions() as session, session.begin():
            await ensure_open_window(session, "EUR")
        rolled = await self.fallback_window() if with_fallback else []
        ids = rolled + await self.net_payments(
            [
                ("DEUTDEFF", "BNPAFRPP", "1200.00"),
                ("BNPAFRPP", "INGBNL2A", "950.00"),
                ("INGBNL2A", "DEUTDEFF", "1100.00"),
                ("BNPAFRPP", "DEUTDEFF", "400.00"),
            ]
        )
        closed = await self.http.post("/v1/clearing/windows/close?currency=EUR", headers=self.admin)
        assert closed.status_code == 202, closed.text
        for instruction in closed.json()["instructions"]:
            booked = await self.post_camt054(
                camt054_for(
                    instruction["reference"], instruction["amount"], "EUR", entry_reference=f"F{uuid.uuid4().hex[:20]}"
                )
            )
            assert booked["entries"][0]["matched"], booked
        for payment_id, payer in ids:
            await wait_for_status(self.http, payment_id, self.bank(payer), {"COMPLETED"}, timeout_s=60)

    async def reconcile(self) -> None:
        """An intraday account-monitor run, as its schedule starts it."""
        result = await reconcile_intraday(self.sessions, self.temporal_env.client, self.settings, by="test_deploy")
        assert result.ok, f"the intraday reconciliation found breaks: {result}"

    async def redemption(self) -> None:
        """State Bank of India turns 10 AED of its tokens back into fiat: paid out, burned."""
        bank = self.bank("SBININBB")
        accepted = await self.http.post(
            "/v1/redemptions",
            json={"currency": "AED", "amount": "10.00", "payout_account": {"account": "30001234567"}},
            headers={**bank, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert accepted.status_code == 202, accepted.text
        redemption = accepted.json()
        for wanted in ("PAYOUT_INSTRUCTED", "COMPLETED"):
            for _ in range(300):
                state = (await self.http.get(f"/v1/redemptions/{redemption['redemption_id']}", headers=bank)).json()
                if state["status"] == wanted:
                    break
                await asyncio.sleep(0.1)
            assert state["status"] == wanted, state
            if wanted == "PAYOUT_INSTRUCTED":
                entry = f"P{uuid.uuid4().hex[:20]}"
                payout = BookingSpec(redemption["reference"], Decimal("10.00"), "AED", entry, credit_debit="DBIT")
                await self.post_camt054(build_camt054([payout], message_id=f"MSG-{entry}"))

    async def round(self, *, with_fallback: bool) -> None:
        await asyncio.gather(
            self.net_window(with_fallback=with_fallback),
            self.rejected_payment(),
            *(self.gross_payment(amount) for amount in ("1000.00", "2500.50", "4000.00")),
        )
        await self.redemption()
        await self.reconcile()


class Prometheus:
    def __init__(self, binary: str, workdir: Path, target: str):
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": "15s"},
                    "scrape_configs": [{"job_name": "deltran", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    async def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
            try:
                if (await self.client.get("/-/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"prometheus not ready after {timeout_s}s: {self.log.read_text()[-2000:]}")

    async def query(self, promql: str) -> list[dict]:
        response = await self.client.get("/api/v1/query", params={"query": promql})
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{promql}: {body}"
        result = body["data"]["result"]
        return result if body["data"]["resultType"] in ("vector", "matrix") else [{"value": result}]

    async def wait_for_scrapes_after(self, since: float, timeout_s: float = 30) -> None:
        """Until two successful scrapes started after `since` (rate() needs two samples)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            up = await self.query('up{job="deltran"}')
            if up and up[0]["value"][1] == "1" and up[0]["value"][0] >= since + 1.5 * SCRAPE_INTERVAL_S:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"no two scrapes after {since} within {timeout_s}s: {self.log.read_text()[-2000:]}")

    async def stop(self) -> None:
        await self.client.aclose()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def has_data(result: list[dict]) -> bool:
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


async def test_every_dashboard_query_returns_data_from_a_real_prometheus(
    api_url, http, credentials, sessions, temporal_env, settings, tmp_path
):
    binary = _require("prometheus", "prometheus")
    prometheus = Prometheus(binary, tmp_path, api_url.removeprefix("http://"))
    try:
        await prometheus.wait_ready()
        demo = Demo(http, credentials, sessions, temporal_env, settings)
        # Emirates NBD takes its events by webhook during the run (the webhook panels).
        receiver = Receiver()
        receiver.start()
        hooked = await http.put("/v1/webhook", json={"url": receiver.url}, headers=demo.bank("EBILAEAD"))
        assert hooked.status_code == 200, hooked.text
        try:
            # Two rounds over the same series: the first creates them (a new series' first
            # sample already counts its first events), the second makes every rate() move.
            for first in (True, False):
                await demo.round(with_fallback=first)
                await prometheus.wait_for_scrapes_after(time.time())
        finally:
            await http.delete("/v1/webhook", headers=demo.bank("EBILAEAD"))
            receiver.stop()

        missing = []
        for board, panel in dashboard_panels():
            for target in panel["targets"]:
                promql = grafana_to_promql(target["expr"])
                result = await prometheus.query(promql)  # valid PromQL, SDK-only panels included
                if not is_sdk_only(panel) and not has_data(result):
                    missing.append(f"{board} / {panel['title']} [{target['refId']}]: {promql}")
        assert not missing, "panel queries without data:\n" + "\n".join(missing)

        # Panels show 0 rather than "no data" for events that did not happen (`or vector(0)`):
        # so also check that every metric they use was recorded, but for those events.
        used = {
            m
            for _, panel in dashboard_panels()
            if not is_sdk_only(panel)
            for t in panel["targets"]
            for m in METRIC_NAME.findall(t["expr"])
        }
        unrecorded = {name for name in used if not await prometheus.query(name)}
        assert unrecorded <= ONLY_ON_FAILURE, f"never recorded by the demo run: {sorted(unrecorded - ONLY_ON_FAILURE)}"
    finally:
        await prometheus.stop()
