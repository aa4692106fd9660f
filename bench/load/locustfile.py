"""Bank users for `make load` (Locust, run headless by bench.load.run in its own process).

Each user is one demo bank submitting JSON payments (`POST /v1/payments`) back to back to
another bank. Most are urgent (gross: the settlement agent books each one's camt.054);
a share `LOAD_NET_SHARE` joins the open clearing window (net: the agent funds the
window). Together the users keep at most `LOAD_IN_FLIGHT` payments in processing —
a closed loop, like the baseline's driver: a user waits while that many are submitted
and not yet released. bench.load.run releases a payment when it completes, is rejected,
or parks in its window (net: it waits for the window's close, not for processing), and
writes the released count to `$LOAD_RUN_DIR/released` several times a second.

Every attempt is journalled before it is sent (`$LOAD_RUN_DIR/journal-<pid>.jsonl`: the
EndToEndId first, then the answer with its latency), so that the accounting afterwards
finds every payment the API may have accepted, answered or not.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, events, task

from cli.demo import DEMO_BICS, party

RUN_DIR = Path(os.environ.get("LOAD_RUN_DIR", "."))
PREFIX = os.environ.get("LOAD_PREFIX", "LD")
IN_FLIGHT = int(os.environ.get("LOAD_IN_FLIGHT", "100"))
NET_SHARE = float(os.environ.get("LOAD_NET_SHARE", "0"))
CREDENTIALS = Path(os.environ.get("LOAD_CREDENTIALS", ".deltran/credentials.json"))
WAIT_FOR_PERMIT_S = 30.0  # bound on one wait for room in the loop

_keys: dict = {}
_accepted = 0
_released = 0
_numbers = itertools.count()
_users = itertools.count()
_journal = None
_stopping = False


@events.test_start.add_listener
def _start(environment, **_) -> None:
    global _journal, _keys
    _keys = json.loads(CREDENTIALS.read_text())["banks"]
    _journal = (RUN_DIR / f"journal-{os.getpid()}.jsonl").open("a", buffering=1)
    gevent.spawn(_follow_released)


@events.test_stopping.add_listener
def _stopping_now(environment, **_) -> None:
    global _stopping
    _stopping = True  # no new payment once the run time is over; answers still get journalled


@events.test_stop.add_listener
def _stop(environment, **_) -> None:
    if _journal is not None:
        _journal.flush()


def _follow_released() -> None:
    global _released
    path = RUN_DIR / "released"
    while True:
        try:
            _released = int(path.read_text() or 0)
        except (FileNotFoundError, ValueError):
            pass
        gevent.sleep(0.02)


def _write(record: dict) -> None:
    assert _journal is not None
    _journal.write(json.dumps(record, separators=(",", ":")) + "\n")


class Bank(FastHttpUser):
    wait_time = constant(0)
    connection_timeout = 10.0
    network_timeout = 30.0

    def on_start(self) -> None:
        n = next(_users)
        self.bic = DEMO_BICS[n % len(DEMO_BICS)]
        self.payee = DEMO_BICS[(n + 1) % len(DEMO_BICS)]
        self.headers = {"Authorization": f"Bearer {_keys[self.bic]}"}

    @task
    def submit(self) -> None:
        global _accepted
        deadline = time.monotonic() + WAIT_FOR_PERMIT_S
        while _accepted - _released >= IN_FLIGHT and time.monotonic() < deadline and not _stopping:
            gevent.sleep(0.005)
        if _stopping:
            gevent.sleep(0.05)
            return
        e2e = f"{PREFIX}{next(_numbers)}"
        urgent = random.random() >= NET_SHARE
        body = {
            "end_to_end_id": e2e,
            "amount": f"{random.randint(100, 99999)}.00",
            "currency": "AED",
            "debtor": party(self.bic, "Load Test Debtor LLC"),
            "creditor": party(self.payee, "Load Test Creditor Ltd"),
            "remittance_info": "load test",
            "urgent": urgent,
        }
        _write({"e": e2e, "b": self.bic, "t": time.time()})
        t0 = time.perf_counter()
        status, payment_id = 0, None
        with self.client.post(
            "/v1/payments", json=body, headers=self.headers, name="POST /v1/payments", catch_response=True
        ) as response:
            status = response.status_code or 0
            if status == 202:
                payment_id = response.json().get("payment_id")
                _accepted += 1
                response.success()
            else:
                response.failure(f"{status}: {(response.text or '')[:200]}")
        _write(
            {
                "e": e2e,
                "s": status,
                "p": payment_id,
                "ms": round((time.perf_counter() - t0) * 1000, 2),
                "t": time.time(),
                "net": not urgent,
            }
        )
