"""ClearingWindowWorkflow, branch by branch: nothing open, an empty window, every
funding booked in time, a funding deadline that leaves the fallback to settle what was
funded, and a window whose positions all net to zero."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from temporalio import activity

from deltran.shared import (
    ClearingInput,
    CloseInput,
    FundingInstructionOut,
    NetInput,
    NettingSummary,
    WindowOutcome,
    WindowRef,
    WindowSettlement,
)
from deltran.vocabulary import WindowStatus
from workflows.clearing import ClearingWindowWorkflow

FUNDING_TIMEOUT_S = 600
WINDOW_ID = uuid.uuid4()


def _summary(count: int, references: list[str]) -> NettingSummary:
    return NettingSummary(
        window_id=WINDOW_ID, obligations_count=count, gross=Decimal("300.00"), net=Decimal("100.00"),
        efficiency=Decimal("0.666667"), liquidity_saved=Decimal("200.00"), netting_ms=1,
        instructions=[FundingInstructionOut(bic=f"BANK{i}", amount=Decimal("50.00"), reference=r)
                      for i, r in enumerate(references)],
    )  # fmt: skip


@dataclass
class Stubs:
    window_id: uuid.UUID | None = WINDOW_ID
    summary: NettingSummary = field(default_factory=lambda: _summary(3, ["FUND-A", "FUND-B"]))
    outcome_status: str = WindowStatus.SETTLED
    calls: list[tuple[str, object]] = field(default_factory=list)

    def activities(self) -> list:
        stubs = self

        @activity.defn(name="close_window")
        async def close_window(data: CloseInput) -> WindowRef:
            stubs.calls.append(("close_window", data))
            return WindowRef(window_id=stubs.window_id)

        @activity.defn(name="net_window")
        async def net_window(data: NetInput) -> NettingSummary:
            stubs.calls.append(("net_window", data))
            return stubs.summary

        @activity.defn(name="settle_window")
        async def settle_window(window_id: uuid.UUID) -> WindowOutcome:
            stubs.calls.append(("settle_window", window_id))
            return WindowOutcome(
                window_id=window_id, status=stubs.outcome_status, settlement_reference="STL-W",
                settled_obligations=3, rolled_obligations=0 if stubs.outcome_status == WindowStatus.SETTLED else 1,
            )  # fmt: skip

        @activity.defn(name="signal_window_payments")
        async def signal_window_payments(settlement: WindowSettlement) -> int:
            stubs.calls.append(("signal_window_payments", settlement))
            return 3

        return [close_window, net_window, settle_window, signal_window_payments]

    def steps(self) -> list[str]:
        return [name for name, _ in self.calls]


async def _run(skipping_env, queue: str, *, fund: list[str] | None = None):
    handle = await skipping_env.client.start_workflow(
        ClearingWindowWorkflow.run,
        ClearingInput(currency="AED", funding_timeout_s=FUNDING_TIMEOUT_S),
        id=f"clearing-test-{uuid.uuid4()}",
        task_queue=queue,
    )
    for reference in fund or []:
        await handle.signal(ClearingWindowWorkflow.funding_booked, reference)
    return handle, await handle.result()


async def test_with_nothing_open_it_ends_at_once(skipping_env, run_worker):
    stubs = Stubs(window_id=None)
    async with run_worker([ClearingWindowWorkflow], stubs.activities()) as queue:
        _, state = await _run(skipping_env, queue)
    assert state.status == "NO_WINDOW" and stubs.steps() == ["close_window"]


async def test_an_empty_window_is_settled_by_its_netting(skipping_env, run_worker):
    stubs = Stubs(summary=_summary(0, []))
    async with run_worker([ClearingWindowWorkflow], stubs.activities()) as queue:
        _, state = await _run(skipping_env, queue)
    assert state.status == WindowStatus.SETTLED and stubs.steps() == ["close_window", "net_window"]


async def _deadline_fired(handle) -> bool:
    """Whether the funding deadline's timer fired, read from the run's history."""
    kinds = {event.WhichOneof("attributes") for event in (await handle.fetch_history()).events}
    return "timer_fired_event_attributes" in kinds


async def test_every_funding_booked_it_settles_and_tells_its_payments(skipping_env, run_worker):
    stubs = Stubs()
    async with run_worker([ClearingWindowWorkflow], stubs.activities()) as queue:
        handle, state = await _run(skipping_env, queue, fund=["FUND-A", "FUND-B", "FUND-A"])
        assert not await _deadline_fired(handle)  # settled on its fundings, not its deadline
    assert state.status == WindowStatus.SETTLED
    assert state.funded_references == ["FUND-A", "FUND-B"]
    assert stubs.steps() == ["close_window", "net_window", "settle_window", "signal_window_payments"]
    assert stubs.calls[3][1] == WindowSettlement(window_id=WINDOW_ID, settlement_reference="STL-W")
    close = stubs.calls[0][1]
    assert isinstance(close, CloseInput) and close.closed_by == handle.id  # one close per run


async def test_a_missed_funding_deadline_settles_what_was_funded(skipping_env, run_worker):
    stubs = Stubs(outcome_status=WindowStatus.PARTIALLY_SETTLED)
    async with run_worker([ClearingWindowWorkflow], stubs.activities()) as queue:
        handle, state = await _run(skipping_env, queue, fund=["FUND-A"])  # FUND-B never comes
        assert await _deadline_fired(handle)  # the deadline decided
    assert state.status == WindowStatus.PARTIALLY_SETTLED
    assert stubs.steps()[-2:] == ["settle_window", "signal_window_payments"]


async def test_a_window_netting_to_zero_still_settles_its_obligations(skipping_env, run_worker):
    stubs = Stubs(summary=_summary(2, []))
    async with run_worker([ClearingWindowWorkflow], stubs.activities()) as queue:
        _, state = await _run(skipping_env, queue)
    assert state.status == WindowStatus.SETTLED
    assert stubs.steps() == ["close_window", "net_window", "settle_window", "signal_window_payments"]
