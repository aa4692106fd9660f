"""The checks `make chaos` runs after its run, independently of the code under test.

Only plain SQL over the database (asyncpg, no DelTran model or activity code) and the
Temporal visibility API (list of workflow executions) are used; the inputs are what the
chaos driver itself recorded: every EndToEndId it tried, every 202 it got, every camt.054
entry the API acknowledged.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
from temporalio.client import Client

from deltran.ledger import BACKING_SQL, SUPPLY_SQL
from deltran.vocabulary import CREDIT_NORMAL_KINDS, sql_in

FINAL_OK = {"COMPLETED", "PARTIALLY_RETURNED", "RETURNED"}  # settled (a return comes after)
FINAL_REJECTED = {"REJECTED", "EXPIRED", "CANCELLED"}
LIST_MAX = 200


@dataclass
class Submitted:
    """What the driver knows of one payment it tried to submit."""

    e2e: str
    bic: str
    currency: str
    amount: str
    gross: bool
    sanctioned: bool
    copies: int = 1
    answers: list[int] = field(default_factory=list)  # HTTP status per attempt (0 = no answer)
    payment_ids: set[str] = field(default_factory=set)  # from the 202s

    @property
    def accepted(self) -> bool:
        return 202 in self.answers


@dataclass
class AckedEntry:
    """A camt.054 entry the API answered 2xx for."""

    message_id: str
    entry_reference: str
    end_to_end_id: str
    outcome: str


# How long a workflow whose payment row is COMPLETED may take to complete itself.
FINISH_GRACE_S = 60.0


async def _still_running(temporal: Client, finishing: dict[str, str]) -> list[str]:
    """The end-to-end ids of `finishing` (workflow id -> end-to-end id) whose workflow
    has not completed within FINISH_GRACE_S."""
    deadline = asyncio.get_running_loop().time() + FINISH_GRACE_S
    waiting = dict(finishing)
    while waiting and asyncio.get_running_loop().time() < deadline:
        for workflow_id in list(waiting):
            described = await temporal.get_workflow_handle(workflow_id).describe()
            if described.status is not None and described.status.name != "RUNNING":
                del waiting[workflow_id]
        if waiting:
            await asyncio.sleep(1.0)
    return sorted(waiting.values())


def plain_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def check(
    dsn: str, temporal: Client, submitted: dict[str, Submitted], acked: list[AckedEntry], prefix: str
) -> dict:
    violations: list[str] = []
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT p.end_to_end_id, p.instructing_bic, p.id::text AS id, p.status,"
            " p.rejection_code, p.rejection_reason,"
            " p.workflow_id, p.amount, p.currency FROM payments p WHERE p.end_to_end_id LIKE $1",
            prefix + "%",
        )
        by_e2e: dict[str, list] = defaultdict(list)
        for r in rows:
            by_e2e[r["end_to_end_id"]].append(r)
        obligations = await conn.fetch(
            "SELECT o.id::text AS id, o.payment_id::text AS payment_id, o.status, o.settlement_mode,"
            " o.amount, o.currency,"
            " o.clearing_window_id::text AS window_id, o.fallback_reason, w.status AS window_status"
            " FROM obligations o JOIN payments p ON p.id = o.payment_id"
            " LEFT JOIN clearing_windows w ON w.id = o.clearing_window_id WHERE p.end_to_end_id LIKE $1",
            prefix + "%",
        )
        obl_by_payment: dict[str, list] = defaultdict(list)
        for o in obligations:
            obl_by_payment[o["payment_id"]].append(o)
        token_rows = await conn.fetch(
            "SELECT t.obligation_id::text AS obligation_id, t.payment_id::text AS payment_id, t.amount,"
            " o.status AS obl_status,"
            " o.amount AS obl_amount FROM tokens t JOIN obligations o ON o.id = t.obligation_id"
        )
        tokens_by_obl: dict[str, list] = defaultdict(list)
        for t in token_rows:
            tokens_by_obl[t["obligation_id"]].append(t)
        dup_token_rows = await conn.fetch(
            "SELECT obligation_id::text AS obligation_id, count(*) AS n FROM tokens"
            " GROUP BY obligation_id HAVING count(*) > 1"
        )
        negative = await conn.fetch(
            "SELECT a.id::text AS id, pt.bic, a.currency, a.kind, a.debits_posted, a.credits_posted FROM accounts a"
            " JOIN participants pt ON pt.id = a.participant_id"
            f" WHERE ({sql_in('a.kind', CREDIT_NORMAL_KINDS)} AND a.credits_posted < a.debits_posted)"
            "    OR (a.kind = 'fiat' AND a.debits_posted < a.credits_posted)"
        )
        supply = await conn.fetch(
            "SELECT currency,"
            f" {SUPPLY_SQL} AS tokens, {BACKING_SQL} AS fiat"
            " FROM accounts GROUP BY currency ORDER BY currency"
        )
        # Booked fiat as the settlement agent reported it: every stored MATCHED entry.
        matched_fiat = {
            r["currency"]: r["total"]
            for r in await conn.fetch(
                "SELECT n.currency, sum(CASE WHEN n.credit_debit = 'DBIT' THEN -n.amount ELSE n.amount END)"
                # (a refund pays back fiat that was never minted: neither its payout nor the
                # refunded part of a window's over-funding counts here)
                " - coalesce(sum(rf.amount), 0) AS total"
                " FROM bank_notifications n LEFT JOIN refunds rf ON rf.entry_id = n.id"
                " WHERE n.outcome = 'MATCHED' AND n.refund_id IS NULL GROUP BY n.currency"
            )
        }
        windows_unbalanced = await conn.fetch(
            # (a cross-currency leg's credit waits in escrow: the banks' positions sum to minus it)
            "SELECT w.id::text AS id, w.currency, w.status, sum(np.net_amount) + w.escrowed_amount AS total"
            " FROM net_positions np JOIN clearing_windows w ON w.id = np.window_id"
            " GROUP BY w.id, w.currency, w.status HAVING sum(np.net_amount) + w.escrowed_amount <> 0"
        )
        windows = await conn.fetch("SELECT status, count(*) AS n FROM clearing_windows GROUP BY status")
        stored_entries = {
            r["entry_reference"] for r in await conn.fetch("SELECT entry_reference FROM bank_notifications")
        }
        stored_messages = {r["message_id"] for r in await conn.fetch("SELECT message_id FROM camt054_messages")}
        unsignalled = await conn.fetch(
            "SELECT entry_reference, end_to_end_id FROM bank_notifications"
            " WHERE outcome = 'MATCHED' AND signalled_at IS NULL"
        )
        multi_compliance = await conn.fetch(
            "SELECT c.payment_id::text AS payment_id, count(*) AS n FROM compliance_results c"
            " JOIN payments p ON p.id = c.payment_id WHERE p.end_to_end_id LIKE $1"
            " GROUP BY c.payment_id HAVING count(*) > 1",
            prefix + "%",
        )
        multi_transfers = await conn.fetch(
            "SELECT obligation_id::text AS obligation_id, kind, count(*) AS n FROM ledger_transfers"
            # A payment may be returned in several parts: each return its own transfer.
            " WHERE obligation_id IS NOT NULL AND kind <> 'returned' GROUP BY obligation_id, kind HAVING count(*) > 1"
        )
    finally:
        await conn.close()

    # -- Temporal visibility: runs per workflow id ------------------------------------------
    runs: Counter[str] = Counter()
    running: set[str] = set()
    async for wf in temporal.list_workflows("WorkflowType = 'PaymentWorkflow'"):
        runs[wf.id] += 1
        if wf.status is not None and wf.status.name == "RUNNING":
            running.add(wf.id)

    # -- payments: final, rejected, in flight, lost -----------------------------------------
    completed = rejected = 0
    in_flight: list[dict] = []
    lost: list[dict] = []
    not_accepted: list[dict] = []
    rejected_list: list[dict] = []
    payments = 0
    dup_workflows: list[dict] = []
    # COMPLETED rows whose workflow was still running when listed: the mint commits a
    # moment before the workflow's last task completes it. Re-checked below.
    finishing: dict[str, str] = {}
    for e2e, s in sorted(submitted.items()):
        found = [r for r in by_e2e.get(e2e, []) if r["instructing_bic"] == s.bic]
        if not found:
            if s.accepted:
                lost.append({"end_to_end_id": e2e, "payment_ids": sorted(s.payment_ids), "answers": s.answers})
            else:
                not_accepted.append({"end_to_end_id": e2e, "answers": s.answers})
            continue
        payments += 1
        if len(found) > 1:
            violations.append(f"{e2e}: {len(found)} payment rows for one sender identity")
        p = found[0]
        if s.payment_ids and s.payment_ids != {p["id"]}:
            violations.append(f"{e2e}: the 202s named payment ids {sorted(s.payment_ids)}, the database {p['id']}")
        n_runs = runs.get(p["workflow_id"], 0)
        if n_runs == 0:
            violations.append(f"{e2e}: payment {p['id']} ({p['status']}) has no workflow {p['workflow_id']}")
        elif n_runs > 1:
            dup_workflows.append({"workflow_id": p["workflow_id"], "runs": n_runs})
        obls = obl_by_payment.get(p["id"], [])
        if len(obls) > 1:
            violations.append(f"{e2e}: {len(obls)} obligations for one payment")
        status = p["status"]
        if status in FINAL_OK:
            completed += 1
            if s.sanctioned:
                violations.append(f"{e2e}: a sanctioned party's payment COMPLETED")
            if len(obls) != 1 or obls[0]["status"] != "SETTLED":
                violations.append(f"{e2e}: COMPLETED but obligation(s) {[o['status'] for o in obls]}")
            elif len(tokens_by_obl.get(obls[0]["id"], [])) != 1:
                violations.append(f"{e2e}: COMPLETED with {len(tokens_by_obl.get(obls[0]['id'], []))} tokens")
            if p["workflow_id"] in running:
                finishing[p["workflow_id"]] = e2e
        elif status in FINAL_REJECTED:
            rejected += 1
            rejected_list.append(
                {"end_to_end_id": e2e, "status": status, "code": p["rejection_code"], "sanctioned": s.sanctioned}
            )
            if any(tokens_by_obl.get(o["id"]) for o in obls):
                violations.append(f"{e2e}: {status} but a token was minted")
        else:
            reason = status
            if obls:
                o = obls[0]
                reason += f"; obligation {o['status']} {o['settlement_mode']}"
                if o["window_id"]:
                    reason += f" in window {o['window_id'][:8]} ({o['window_status']})"
                if o["fallback_reason"]:
                    reason += f"; rolled: {o['fallback_reason']}"
            else:
                reason += "; no obligation yet"
            reason += f"; workflow {'running' if p['workflow_id'] in running else 'not running'} ({n_runs} run(s))"
            in_flight.append({"end_to_end_id": e2e, "payment_id": p["id"], "status": status, "reason": reason})
        if s.sanctioned and status not in FINAL_REJECTED and status not in FINAL_OK:
            pass  # still screening: listed in flight
    # Workflows of this run that have no payment row.
    known_wf = {r["workflow_id"] for rr in by_e2e.values() for r in rr}
    for wf_id in runs:
        if prefix in wf_id and wf_id not in known_wf:
            violations.append(f"workflow {wf_id} has no payment row")

    # -- tokens ------------------------------------------------------------------------------
    duplicate_tokens = [{"obligation_id": r["obligation_id"], "tokens": r["n"]} for r in dup_token_rows]
    for t in token_rows:
        if t["obl_status"] != "SETTLED":
            violations.append(f"token for obligation {t['obligation_id']} which is {t['obl_status']}, not SETTLED")
        if t["amount"] != t["obl_amount"]:
            violations.append(
                f"token for obligation {t['obligation_id']}: {t['amount']} != obligation {t['obl_amount']}"
            )
    for r in multi_transfers:
        violations.append(f"obligation {r['obligation_id']}: {r['n']} ledger transfers of kind {r['kind']}")
    for r in multi_compliance:
        violations.append(f"payment {r['payment_id']}: {r['n']} compliance results")

    # -- ledger --------------------------------------------------------------------------------
    for a in negative:
        violations.append(
            f"balance below zero: {a['bic']} {a['currency']} {a['kind']} "
            f"debits {a['debits_posted']} credits {a['credits_posted']}"
        )
    supply_report = {}
    for r in supply:
        cur, tok, fiat = r["currency"], Decimal(r["tokens"]), Decimal(r["fiat"])
        booked = Decimal(matched_fiat.get(cur, 0))
        supply_report[cur] = {"token_supply": str(tok), "fiat_ledger": str(fiat), "matched_camt054": str(booked)}
        if tok != fiat:
            violations.append(f"{cur}: token supply {tok} != booked fiat on the ledger {fiat}")
        if fiat > booked:
            violations.append(f"{cur}: fiat on the ledger {fiat} exceeds the MATCHED camt.054 entries {booked}")
    for w in windows_unbalanced:
        violations.append(f"window {w['id']} ({w['currency']}, {w['status']}): net positions sum to {w['total']}")

    # -- camt.054: every acknowledged entry is stored ------------------------------------------
    missing_entries = [e for e in acked if e.entry_reference not in stored_entries]
    for e in missing_entries[:LIST_MAX]:
        violations.append(f"camt.054 entry {e.entry_reference} (message {e.message_id}) acknowledged but not stored")
    missing_messages = sorted({e.message_id for e in acked} - stored_messages)
    for m in missing_messages[:LIST_MAX]:
        violations.append(f"camt.054 message {m} acknowledged but not stored")
    unsignalled_list = [
        {"entry_reference": r["entry_reference"], "end_to_end_id": r["end_to_end_id"]} for r in unsignalled
    ]

    for e2e in await _still_running(temporal, finishing):
        violations.append(f"{e2e}: COMPLETED in the database, workflow still running after {FINISH_GRACE_S:.0f} s")
    return {
        "payments": payments,
        "completed": completed,
        "rejected": rejected,
        "in_flight": len(in_flight),
        "lost": len(lost),
        "duplicate_workflows": len(dup_workflows),
        "duplicate_tokens": len(duplicate_tokens),
        "invariant_violations": violations,
        "_details": {
            "attempted": len(submitted),
            "not_accepted": not_accepted,
            "in_flight_payments": in_flight,
            "rejected_payments": rejected_list,
            "lost_payments": lost,
            "duplicate_workflow_ids": dup_workflows,
            "duplicate_token_obligations": duplicate_tokens,
            "supply_per_currency": supply_report,
            "windows_by_status": {r["status"]: r["n"] for r in windows},
            "camt054_entries_acknowledged": len(acked),
            "camt054_entries_acknowledged_missing": len(missing_entries),
            "matched_entries_not_signalled": unsignalled_list,
            "payment_workflows_seen": sum(runs.values()),
        },
    }
