"""`/v1/webhook`: a bank's one webhook endpoint. Events (deltran/events.py) numbered after
it is set are POSTed to it, signed with its secret (Standard Webhooks), by the bank's
delivery workflow (workflows/webhooks.py)."""

from __future__ import annotations

import logging
from typing import cast

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import CursorResult, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from temporalio.service import RPCError

from api.bank_param import BankQuery, invalid_query, named_bank
from api.deps import CallerDep, SessionDep, SettingsDep
from api.problems import Problem, problem_responses
from api.schemas import WebhookCreated, WebhookIn, WebhookOut
from api.strict_json import StrictJSONRoute
from deltran import audit, events
from deltran.db.tables import Event, Webhook
from deltran.vocabulary import DeliveryStatus
from deltran.webhooks.delivery_start import start_delivery
from deltran.webhooks.signing import new_secret
from deltran.webhooks.url_policy import UrlRefused, check_url_form, resolve_checked

log = logging.getLogger("deltran.api")
router = APIRouter(
    prefix="/v1/webhook",
    tags=["webhooks"],
    responses=problem_responses(403, 404, 422),
    route_class=StrictJSONRoute,
)


# 400: a body that is not JSON at all.
@router.put("", response_model=WebhookCreated, responses=problem_responses(400))
async def set_webhook(
    body: WebhookIn,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    bic: BankQuery = None,
) -> WebhookCreated:
    """Set the bank's endpoint (replacing any) with a new secret, shown this once. The URL
    must be https on a public address (no credentials in it); events numbered from now
    on are delivered to it, in order, retried with backoff for a day."""
    bank = await named_bank(session, caller, bic)
    assert bank is not None
    try:
        url = check_url_form(body.url, allow_private=settings.webhook_allow_private)
        await resolve_checked(url, allow_private=settings.webhook_allow_private)
    except UrlRefused as refused:
        raise invalid_query(("url", str(refused))) from None
    secret = new_secret()
    # Under the numberer's lock: every event is numbered either before (and not pushed)
    # or after the webhook exists (and pushed to it).
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": events.NUMBERER_LOCK_KEY})
    after = await session.scalar(select(func.coalesce(func.max(Event.seq), 0)))
    await session.execute(
        insert(Webhook)
        .values(participant_id=bank.id, url=url, secret=secret, after_seq=after)
        .on_conflict_do_update(
            index_elements=[Webhook.participant_id],
            # A new URL or secret for the same bank: what was still to deliver goes to it.
            set_={"url": url, "secret": secret, "created_at": func.now()},
        )
    )
    await audit.record(
        session, actor=caller.identity, action="webhook.set", subject=bank.bic, result="ok", details={"url": url}
    )
    await session.commit()
    try:
        await start_delivery(await request.app.state.temporal.get(), settings, bank.bic)
    except RPCError as error:  # the bank gets its secret; the waker starts the delivery
        log.warning("webhook delivery of %s not started (Temporal: %s): it starts with its next event", bank.bic, error)
    return WebhookCreated(url=url, secret=secret)


@router.get("", response_model=WebhookOut)
async def get_webhook(caller: CallerDep, session: SessionDep, bic: BankQuery = None) -> WebhookOut:
    """The bank's endpoint (never its secret)."""
    bank = await named_bank(session, caller, bic)
    assert bank is not None
    found = await session.get(Webhook, bank.id)
    if found is None:
        raise Problem(404, f"{bank.bic} has no webhook", kind="no-webhook")
    return WebhookOut(url=found.url, created_at=found.created_at)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_webhook(caller: CallerDep, session: SessionDep, bic: BankQuery = None) -> Response:
    """Remove the bank's endpoint: nothing more is delivered (events stay at GET
    /v1/events)."""
    bank = await named_bank(session, caller, bic)
    assert bank is not None
    # Under the numberer's lock, as PUT: events still to push are resolved here, so none
    # stays PENDING for a webhook that is gone (nor goes to one set later).
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": events.NUMBERER_LOCK_KEY})
    removed = await session.execute(delete(Webhook).where(Webhook.participant_id == bank.id))
    if not cast(CursorResult, removed).rowcount:
        raise Problem(404, f"{bank.bic} has no webhook", kind="no-webhook")
    await session.execute(
        update(Event)
        .where(Event.participant_id == bank.id, Event.delivery_status == DeliveryStatus.PENDING, Event.seq.is_not(None))
        .values(delivery_status=DeliveryStatus.NO_WEBHOOK)
    )
    await audit.record(session, actor=caller.identity, action="webhook.delete", subject=bank.bic, result="ok")
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
