"""The baselines for `make load`: a bare workflow of the payment's shape, two ways.

`BareCycleWorkflow` does what PaymentWorkflow does minus the work: four activities that
do nothing (screen, obligation, settle, mint), one signal it waits for (with the same
deadline timer), the same search attributes at start and the same three upserts
(AWAITING_SETTLEMENT with SettlementMode, SETTLED, COMPLETED). `BareCycleLocalWorkflow`
is the same cycle with the four steps as local activities (run inside the workflow task
by the worker that holds it: no activity tasks, about a fifth of the history events).
Both run on their own task queue, served by their own worker process
(`python -m bench.load.baseline --task-queue Q`, the same way DelTran's worker is a
process of its own), on the same Temporal server.

`drive` starts and signals such workflows in a closed loop — at most `in_flight` at once,
the same cap the bank users keep for DelTran — for `seconds`, then waits up to `drain_s`
for the ones still running. Counting is the one `bench.load.run` uses for DelTran:
a cycle counts when it completes before the drain ends, and the rate is cycles over the
time from the first start to the last completion.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from deltran.shared import FiatBooking, PaymentInput
    from deltran.temporal import search_attributes as sa
    from deltran.temporal.search_attributes import initial_search_attributes
    from deltran.vocabulary import PaymentStatus

STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@activity.defn(name="bare_screen")
async def bare_screen(payment_id: str) -> bool:
    return True


@activity.defn(name="bare_obligation")
async def bare_obligation(payment_id: str) -> bool:
    return True


@activity.defn(name="bare_settle")
async def bare_settle(payment_id: str) -> bool:
    return True


@activity.defn(name="bare_mint")
async def bare_mint(payment_id: str) -> bool:
    return True


ACTIVITIES = [bare_screen, bare_obligation, bare_settle, bare_mint]


class _BareCycle:
    """The cycle both baselines run; they differ only in how a step runs (the SDK wants
    each workflow's run method on the class itself)."""

    def __init__(self) -> None:
        self._booked = False

    async def _cycle(self, data: PaymentInput) -> str:
        pid = str(data.payment_id)
        await self._step(bare_screen, pid)
        await self._step(bare_obligation, pid)
        self._upsert(PaymentStatus.AWAITING_SETTLEMENT, settlement_mode="GROSS")
        try:
            await workflow.wait_condition(lambda: self._booked, timeout=timedelta(seconds=data.deadline_s))
        except TimeoutError:
            return "EXPIRED"
        await self._step(bare_settle, pid)
        self._upsert(PaymentStatus.SETTLED)
        await self._step(bare_mint, pid)
        self._upsert(PaymentStatus.COMPLETED)
        return "COMPLETED"

    @workflow.signal(name="fiat_booked")
    def fiat_booked(self, booking: FiatBooking) -> None:
        self._booked = True

    async def _step(self, fn, arg: str) -> bool:
        raise NotImplementedError

    def _upsert(self, status: PaymentStatus, settlement_mode: str | None = None) -> None:
        updates = [sa.PAYMENT_STATUS.value_set(status.value)]
        if settlement_mode is not None:
            updates.append(sa.SETTLEMENT_MODE.value_set(settlement_mode))
        workflow.upsert_search_attributes(updates)


@workflow.defn(name="BareCycleWorkflow")
class BareCycleWorkflow(_BareCycle):
    @workflow.run
    async def run(self, data: PaymentInput) -> str:
        return await self._cycle(data)

    async def _step(self, fn, arg: str) -> bool:
        return await workflow.execute_activity(fn, arg, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY)


@workflow.defn(name="BareCycleLocalWorkflow")
class BareCycleLocalWorkflow(_BareCycle):
    @workflow.run
    async def run(self, data: PaymentInput) -> str:
        return await self._cycle(data)

    async def _step(self, fn, arg: str) -> bool:
        return await workflow.execute_local_activity(
            fn, arg, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
        )


BASELINES = {"regular": BareCycleWorkflow, "local": BareCycleLocalWorkflow}


# -- the driver ------------------------------------------------------------------------------


@dataclass
class DriveResult:
    started: int = 0
    completed: int = 0
    errors: int = 0
    first_start: float | None = None  # epoch seconds
    last_completion: float | None = None
    in_flight: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        if not self.completed or self.first_start is None or self.last_completion is None:
            return 0.0
        return self.completed / max(self.last_completion - self.first_start, 1e-9)


def _input(run_id: str, n: int) -> PaymentInput:
    return PaymentInput(
        payment_id=uuid.uuid4(),
        end_to_end_id=f"BASE-{run_id}-{n}",
        amount=Decimal("1000.00"),
        currency="AED",
        debtor_agent_bic="EBILAEAD",
        creditor_agent_bic="SBININBB",
        deadline_s=3600,
    )


def _booking(n: int) -> FiatBooking:
    return FiatBooking(
        notification_id=uuid.uuid4(),
        camt054_entry_reference=f"BASE-{n}",
        bank_confirmation_reference=f"BASE-{n}",
        amount=Decimal("1000.00"),
        currency="AED",
        booking_date=None,
    )


async def drive(
    client,
    task_queue: str,
    seconds: float,
    in_flight: int,
    drain_s: float,
    shape: type[BareCycleWorkflow] | type[BareCycleLocalWorkflow] = BareCycleWorkflow,
) -> DriveResult:
    """Start + signal + await bare cycles of `shape`, `in_flight` at a time, for `seconds`
    (then drain)."""
    run_id = uuid.uuid4().hex[:8]
    result = DriveResult()
    stop_at = time.monotonic() + seconds
    drain_until = stop_at + drain_s
    counter = iter(range(10**9))
    running: set[str] = set()

    async def cycle(n: int) -> None:
        data = _input(run_id, n)
        wid = f"bare-{run_id}-{n}"
        handle = await client.start_workflow(
            shape.run,
            data,
            id=wid,
            task_queue=task_queue,
            search_attributes=initial_search_attributes(data),
        )
        result.started += 1
        if result.first_start is None:
            result.first_start = time.time()
        running.add(wid)
        await handle.signal(shape.fiat_booked, _booking(n))
        remaining = drain_until - time.monotonic()
        if remaining <= 0:
            return
        outcome = await asyncio.wait_for(handle.result(), timeout=remaining)
        if outcome == "COMPLETED":
            running.discard(wid)
            result.completed += 1
            result.last_completion = time.time()

    async def loop() -> None:
        while time.monotonic() < stop_at:
            try:
                await cycle(next(counter))
            except TimeoutError:
                return  # the drain is over; the cycle stays listed as in flight
            except Exception:  # noqa: BLE001 - counted; the loop goes on, bounded by time
                result.errors += 1
                await asyncio.sleep(0.1)

    await asyncio.gather(*(loop() for _ in range(in_flight)))
    result.in_flight = sorted(running)
    return result


# -- the worker process ------------------------------------------------------------------------


async def serve(task_queue: str) -> None:
    from temporalio.worker import Worker

    from deltran.config import Settings
    from deltran.temporal.client import connect

    client = await connect(Settings())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=list(BASELINES.values()),
        activities=ACTIVITIES,
        max_concurrent_activities=100,
        graceful_shutdown_timeout=timedelta(seconds=5),
    ):
        print("ready", flush=True)
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description="worker for the bare baseline workflow")
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.task_queue))
    sys.stdout.flush()
    os._exit(0)  # sdk-python #300: skip the interpreter teardown that can abort after success


if __name__ == "__main__":
    sys.exit(main())
