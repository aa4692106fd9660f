"""The webhook delivery workflow's steps (workflows/webhooks.py): which events a bank's
webhook is due next, one event's delivery attempt, and giving an event up. Each is
idempotent: a delivered event is not POSTed again by a retry of its step (a crash between
the receiver's 2xx and our commit does POST it again: at-least-once, and the event id
lets the receiver recognise the copy)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from deltran.config import Settings
from deltran.observability import metrics
from deltran.shared import DeliveryOutcome, PendingDeliveries
from deltran.vocabulary import DeliveryStatus
from deltran.webhooks.signing import signed_headers
from deltran.webhooks.url_policy import UrlRefused, pinned, resolve_checked

DELIVERY_FAILED = "WebhookDeliveryFailed"

_PENDING = text(
    """
    SELECT e.id, e.seq FROM webhooks w
    JOIN participants p ON p.id = w.participant_id
    JOIN events e ON e.participant_id = w.participant_id
    WHERE p.bic = :bic AND e.seq > greatest(:after, w.after_seq) AND e.delivery_status = :pending
    ORDER BY e.seq LIMIT :limit
    """
)
_HAS_WEBHOOK = text("SELECT 1 FROM webhooks w JOIN participants p ON p.id = w.participant_id WHERE p.bic = :bic")
_EVENT = text(
    """
    SELECT e.id, e.type, e.created_at, e.data, e.delivery_status, w.url, w.secret
    FROM events e JOIN participants p ON p.id = e.participant_id
    -- Only the webhook set before the event was numbered: not one set after it (DELETE, PUT).
    LEFT JOIN webhooks w ON w.participant_id = e.participant_id AND e.seq > w.after_seq
    WHERE e.id = :id AND p.bic = :bic
    """
)
_RECORD = text(
    """
    UPDATE events SET delivery_attempts = delivery_attempts + 1, delivery_status = CAST(:status AS varchar),
                      delivered_at = CASE WHEN CAST(:status AS varchar) = 'DELIVERED' THEN now() END,
                      delivery_error = CAST(:error AS text)
    WHERE id = :id AND delivery_status = 'PENDING'
    """
)


def event_body(event_id: uuid.UUID, type_: str, created_at: datetime, data: dict) -> bytes:
    """A delivery's body: the event as GET /v1/events lists it."""
    # The time as GET /v1/events writes it (pydantic: UTC with a Z).
    at = created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    event = {"id": str(event_id), "type": type_, "created_at": at, "data": data}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookActivities:
    def __init__(self, session_factory: async_sessionmaker, settings: Settings) -> None:
        self._sessions = session_factory
        self._allow_private = settings.webhook_allow_private
        self._period = timedelta(seconds=settings.webhook_delivery_period_s)
        # Never follows redirects: a redirect could point anywhere, checked or not. No
        # kept-alive connections: a request is pinned to an address, and a pooled TLS
        # connection to that address was verified for whichever bank's name opened it.
        self._http = httpx.AsyncClient(
            follow_redirects=False, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
        )

    @activity.defn(name="pending_deliveries")
    async def pending_deliveries(self, bic: str, after_seq: int, limit: int) -> PendingDeliveries:
        async with self._sessions() as session:
            # Read first (each statement sees the latest commits): every event numbered up
            # to here that is this bank's to deliver is among the rows read next.
            through = await session.scalar(text("SELECT coalesce(max(seq), 0) FROM events"))
            rows = (
                await session.execute(
                    _PENDING, {"bic": bic, "after": after_seq, "limit": limit, "pending": DeliveryStatus.PENDING}
                )
            ).all()
            webhook = bool(rows) or await session.scalar(_HAS_WEBHOOK, {"bic": bic}) is not None
        return PendingDeliveries(webhook=webhook, events=[(r.id, r.seq) for r in rows], through=through)

    @activity.defn(name="deliver_event")
    async def deliver_event(self, bic: str, event_id: uuid.UUID, timeout_s: float) -> DeliveryOutcome:
        """One attempt: POST the event, signed, to the bank's webhook as it is now (a URL
        or secret changed meanwhile is used from the next attempt on). A 2xx delivers it;
        anything else is recorded on the event and raised, for Temporal to retry."""
        async with self._sessions() as session:
            event = (await session.execute(_EVENT, {"id": event_id, "bic": bic})).one_or_none()
        if event is None or event.delivery_status != DeliveryStatus.PENDING:
            return DeliveryOutcome(delivered=False)
        if event.url is None:
            await self._record(event_id, DeliveryStatus.NO_WEBHOOK, None)
            return DeliveryOutcome(delivered=False)
        if datetime.now(UTC) - event.created_at > self._period:
            # Its delivery period runs from its writing, not from its turn in the queue.
            await self._record(event_id, DeliveryStatus.FAILED, "not delivered within the delivery period")
            metrics.webhook_gave_up.labels(bic).inc()
            return DeliveryOutcome(delivered=False)
        body = event_body(event.id, event.type, event.created_at, event.data)
        headers = signed_headers(event.secret, str(event.id), datetime.now(UTC), body)
        try:
            # DNS can change after the URL was accepted: its addresses are checked again,
            # and the request goes to the one checked (never resolved a second time).
            [address, *_] = await resolve_checked(event.url, allow_private=self._allow_private)
            target = pinned(event.url, address)
            # Streamed and never read: a receiver answering with an endless body costs nothing.
            async with (
                asyncio.timeout(timeout_s),
                self._http.stream(
                    "POST",
                    target.url,
                    content=body,
                    headers={
                        **headers,
                        "host": target.host,
                        "content-type": "application/json",
                        "user-agent": "DelTran-Webhooks/1",
                    },
                    extensions=target.extensions,
                    timeout=timeout_s,
                ) as response,
            ):
                failure = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except UrlRefused as refused:
            failure = f"address refused: {refused}"
        except httpx.HTTPError as error:
            failure = f"{type(error).__name__}: {error}"[:500]
        except TimeoutError:
            failure = f"no answer within {timeout_s} s"
        if failure is not None:
            metrics.webhook_attempts.labels(bic, "failed").inc()
            await self._record(event_id, DeliveryStatus.PENDING, failure)
            raise ApplicationError(f"webhook of {bic} did not take event {event_id}: {failure}", type=DELIVERY_FAILED)
        metrics.webhook_attempts.labels(bic, "delivered").inc()
        metrics.webhook_delivery_seconds.observe((datetime.now(UTC) - event.created_at).total_seconds())
        await self._record(event_id, DeliveryStatus.DELIVERED, None)
        return DeliveryOutcome(delivered=True)

    @activity.defn(name="give_up_event")
    async def give_up(self, event_id: uuid.UUID) -> None:
        async with self._sessions() as session, session.begin():
            bic = await session.scalar(
                text(
                    "UPDATE events e SET delivery_status = 'FAILED' FROM participants p"
                    " WHERE e.id = :id AND e.delivery_status = 'PENDING' AND p.id = e.participant_id RETURNING p.bic"
                ),
                {"id": event_id},
            )
        if bic is not None:
            metrics.webhook_gave_up.labels(bic).inc()

    async def _record(self, event_id: uuid.UUID, status: DeliveryStatus, error: str | None) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(_RECORD, {"id": event_id, "status": status, "error": error})
