"""The worker process: runs payment workflows and their activities.

`build_worker` is what the tests use too, so the suite runs exactly the production
registration of workflows and activities.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.clearing import ClearingActivities
from activities.compliance import ComplianceActivities
from activities.fx_settlement import FxSettlementActivities
from activities.obligations import ObligationActivities
from activities.reconciliation import ReconciliationActivities
from activities.redemptions import RedemptionActivities
from activities.settlement import SettlementActivities
from activities.tokens import TokenActivities
from activities.webhooks import WebhookActivities
from deltran import audit, faults, gc_tuning
from deltran.config import Settings
from deltran.db.engine import make_engine, make_session_factory
from deltran.observability import metrics
from deltran.observability.tracing import setup_tracing
from deltran.reconciliation import BREAK_KINDS
from deltran.temporal.client import connect
from deltran.webhooks.delivery_start import DeliveryWaker
from worker.event_numberer import run_numberer
from worker.fail_fast import FailFastInterceptor
from worker.logging_interceptor import LoggingInterceptor
from worker.sweeper import run_sweeper
from worker.telemetry import start_worker_metrics
from workflows.clearing import ClearingWindowWorkflow
from workflows.payment import PaymentWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.redemption import RedemptionWorkflow
from workflows.webhooks import WebhookDeliveryWorkflow

log = logging.getLogger("deltran.worker")

WORKFLOWS = [
    PaymentWorkflow,
    ClearingWindowWorkflow,
    ReconciliationWorkflow,
    WebhookDeliveryWorkflow,
    RedemptionWorkflow,
]
MAX_POOL_SIZE = 50


def activities_for(client: Client, session_factory: async_sessionmaker, settings: Settings) -> list:
    compliance = ComplianceActivities(session_factory, settings)
    obligations = ObligationActivities(session_factory, settings)
    settlement = SettlementActivities(session_factory)
    fx_settlement = FxSettlementActivities(session_factory)
    tokens = TokenActivities(session_factory)
    clearing = ClearingActivities(session_factory, client)
    monitor = ReconciliationActivities(session_factory, settings)
    webhooks = WebhookActivities(session_factory, settings)
    redeeming = RedemptionActivities(session_factory)
    return [
        compliance.screen_payment,
        obligations.create_obligation,
        obligations.expire_payment,
        obligations.cancel_payment,
        settlement.settle_obligation,
        fx_settlement.settle_fx,
        fx_settlement.expire_fx,
        tokens.mint_token,
        clearing.close_window,
        clearing.net_window,
        clearing.settle_window,
        clearing.signal_window_payments,
        monitor.reconcile,
        webhooks.pending_deliveries,
        webhooks.deliver_event,
        webhooks.give_up,
        redeeming.instruct_payout,
        redeeming.payout_state,
        redeeming.burn_tokens,
        redeeming.release_tokens,
    ]


def build_worker(client: Client, session_factory: async_sessionmaker, settings: Settings, task_queue: str) -> Worker:
    # The counters this worker records start at 0 for its currencies: dashboards show 0,
    # not "No data", before the first fallback, roll, breaker trip or break.
    activities = activities_for(client, session_factory, settings)
    metrics.initialise(settings.supported_currencies, BREAK_KINDS, steps=[a.__name__ for a in activities])
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        # The payment steps run as local activities: as many slots (a minting worker's
        # thousands of concurrent mints feed the batcher through these).
        max_concurrent_local_activities=settings.worker_max_concurrent_activities,
        workflow_runner=SandboxedWorkflowRunner() if settings.workflow_sandbox else UnsandboxedWorkflowRunner(),
        # Log context (workflow, activity, payment, window) and one line per activity.
        interceptors=_interceptors(client),
        # Let running activities finish their transaction on shutdown (default 0 cancels them).
        graceful_shutdown_timeout=timedelta(seconds=10),
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=settings.worker_sticky_timeout_s),
    )


def _interceptors(client: Client) -> list:
    """Logging always; tracing unless the client already brings it (ours does, see
    deltran.temporal.client), so every activity runs inside the request's trace."""
    # Logging outside fail-fast: the failure it logs is the non-retryable one Temporal sees.
    interceptors: list = [LoggingInterceptor(), FailFastInterceptor()]
    if faults.install():  # crash tests only: DELTRAN_FAULT_CRASH
        interceptors.append(faults.FaultInjectionInterceptor())
    if not any(isinstance(i, TracingInterceptor) for i in client.config()["interceptors"]):
        interceptors.insert(0, TracingInterceptor())
    return interceptors


async def run_worker(settings: Settings) -> None:
    if settings.workflow_sandbox:
        # The sandbox imports each workflow module afresh for every workflow run: from its
        # cached bytecode if there is one, else compiled from source each time. Write the
        # cache even where the environment sets PYTHONDONTWRITEBYTECODE.
        sys.dont_write_bytecode = False
    # Each activity holds a connection only for one short transaction, so a quarter of
    # the activity slots (plus overflow) keeps them fed; the rest wait briefly for one.
    # Capped: a minting worker runs thousands of activities, but its mints share a few
    # batch transactions, and PostgreSQL's connections are the scarcer resource.
    slots = settings.worker_max_concurrent_activities
    engine = make_engine(settings.effective_database_url, pool_size=min(max(slots // 4, 5), MAX_POOL_SIZE))
    setup_tracing("deltran-worker")
    runtime = start_worker_metrics(settings)
    client = await connect(settings, runtime=runtime)
    sessions = make_session_factory(engine)
    worker = build_worker(client, sessions, settings, settings.task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gc_tuning.tune(settings.gc_gen0_threshold)
    log.info(
        "worker polling task queue %s at %s; metrics on %s:%d/metrics",
        settings.task_queue,
        settings.effective_temporal_address,
        settings.worker_metrics_host,
        settings.worker_metrics_port,
    )
    # Seals audit records into the hash chain shortly after they are written; with
    # several workers an advisory lock lets one seal at a time.
    sealer = asyncio.create_task(audit.run_sealer(sessions, stop=stop))
    sweeper = asyncio.create_task(run_sweeper(client, sessions, settings, stop))
    waker = DeliveryWaker(client, sessions, settings)
    numberer = asyncio.create_task(run_numberer(sessions, stop, on_round=waker.note))
    waking = asyncio.create_task(waker.run(stop))
    async with worker:
        await stop.wait()
        log.info("worker shutting down")
    await asyncio.gather(sealer, sweeper, numberer, waking)
    await engine.dispose()
