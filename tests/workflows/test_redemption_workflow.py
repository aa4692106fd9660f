"""RedemptionWorkflow, branch by branch: the payout booked (tokens burned), refused by the
settlement agent (released there; the workflow ends), and past its deadline (released
here) — and a payout booked just as the deadline passed, which must burn, not release."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from temporalio import activity

from deltran.shared import PayoutState, RedemptionInput
from workflows.redemption import RedemptionWorkflow

REDEMPTION = uuid.uuid4()


@dataclass
class Stubs:
    status: str = "RESERVED"
    booked_after_looks: int | None = None  # the payout is booked from this look on
    booked_at_release: bool = False  # booked just before the deadline's release
    refused_by_agent: bool = False  # released by the API as soon as it was instructed
    calls: list[str] = field(default_factory=list)

    def activities(self) -> list:
        stubs = self

        @activity.defn(name="instruct_payout")
        async def instruct_payout(redemption_id: uuid.UUID) -> None:
            stubs.calls.append("instruct_payout")
            stubs.status = "RELEASED" if stubs.refused_by_agent else "PAYOUT_INSTRUCTED"

        @activity.defn(name="payout_state")
        async def payout_state(redemption_id: uuid.UUID) -> PayoutState:
            looks = stubs.calls.count("payout_state")
            stubs.calls.append("payout_state")
            booked = stubs.booked_after_looks is not None and looks >= stubs.booked_after_looks
            return PayoutState(status=stubs.status, booked=booked or stubs.status == "BOOKED_AT_RELEASE")

        @activity.defn(name="burn_tokens")
        async def burn_tokens(redemption_id: uuid.UUID) -> str:
            stubs.calls.append("burn_tokens")
            stubs.status = "COMPLETED"
            return "COMPLETED"

        @activity.defn(name="release_tokens")
        async def release_tokens(redemption_id: uuid.UUID, reason: str) -> str:
            stubs.calls.append("release_tokens")
            if stubs.booked_at_release:
                stubs.status = "BOOKED_AT_RELEASE"  # the release finds the payout booked: unchanged
                return "PAYOUT_INSTRUCTED"
            stubs.status = "RELEASED"
            return "RELEASED"

        return [instruct_payout, payout_state, burn_tokens, release_tokens]


async def _run(skipping_env, run_worker, stubs: Stubs, *, signal: bool = False, deadline_s: int = 3600) -> str:
    async with run_worker([RedemptionWorkflow], stubs.activities()) as queue:
        handle = await skipping_env.client.start_workflow(
            RedemptionWorkflow.run,
            RedemptionInput(redemption_id=REDEMPTION, deadline_s=deadline_s),
            id=f"redemption-test-{uuid.uuid4()}",
            task_queue=queue,
        )
        if signal:
            await handle.signal(RedemptionWorkflow.payout_changed)
        return await handle.result()


async def test_a_booked_payout_burns_the_tokens(skipping_env, run_worker):
    stubs = Stubs(booked_after_looks=2)  # booked after two looks (a few minutes)
    assert await _run(skipping_env, run_worker, stubs) == "COMPLETED"
    assert stubs.calls == ["instruct_payout", "payout_state", "payout_state", "payout_state", "burn_tokens"]


async def test_a_payout_refused_by_the_agent_ends_it_released(skipping_env, run_worker):
    stubs = Stubs(refused_by_agent=True)
    assert await _run(skipping_env, run_worker, stubs, signal=True) == "RELEASED"
    assert "burn_tokens" not in stubs.calls and "release_tokens" not in stubs.calls


async def test_no_payout_by_the_deadline_releases_the_tokens(skipping_env, run_worker):
    stubs = Stubs()
    assert await _run(skipping_env, run_worker, stubs, deadline_s=900) == "RELEASED"
    assert stubs.calls[-1] == "release_tokens" and "burn_tokens" not in stubs.calls


async def test_a_payout_booked_as_the_deadline_passes_burns(skipping_env, run_worker):
    stubs = Stubs(booked_at_release=True)
    assert await _run(skipping_env, run_worker, stubs, deadline_s=60) == "COMPLETED"
    assert stubs.calls[-2:] == ["payout_state", "burn_tokens"]
