"""`/v1/accounts`: what a bank holds on DelTran, per currency, and the statement of its
token account over a period, a page at a time (JSON, or camt.053.001.08 with
`Accept: application/xml`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response

from api import cursor
from api.bank_param import BankQuery, invalid_query, named_bank
from api.deps import Caller, CallerDep, SessionDep, SettingsDep
from api.media import wants_xml
from api.problems import Problem, problem_responses
from api.schemas import AccountBalance, AccountList, PostingOut, StatementOut
from api.times import QueryTime, time_problems
from deltran import statements
from deltran.domain.statements import PostingKey, Statement
from deltran.iso20022.camt053 import Camt053Invalid, build_camt053
from deltran.iso20022.token_account import account_id
from deltran.money import MINOR_UNITS, format_amount

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], responses=problem_responses(400, 403, 404, 406, 422))


async def _whose(session, caller: Caller, bic: str | None) -> str:
    bank = await named_bank(session, caller, bic)
    assert bank is not None
    return bank.bic


@router.get("", response_model=AccountList)
async def list_accounts(caller: CallerDep, session: SessionDep, bic: BankQuery = None) -> AccountList:
    """Per currency: the fiat the bank booked on DelTran's settlement account (minted into
    tokens; what its tokens were issued against, wherever they are now), its tokens, the
    tokens reserved for payouts not yet booked, and the cross-currency legs it is owed,
    in escrow until each payment's other leg settles too."""
    held = await statements.balances(session, await _whose(session, caller, bic))
    return AccountList(
        accounts=[
            AccountBalance(
                currency=b.currency,
                fiat=format_amount(b.fiat, b.currency),
                tokens=format_amount(b.tokens, b.currency),
                reserved=format_amount(b.reserved, b.currency),
                paid_out=format_amount(b.paid_out, b.currency),
                in_escrow=format_amount(b.in_escrow, b.currency),
            )
            for b in held
        ]
    )


def _encode_cursor(found: Statement) -> str | None:
    if found.next is None:
        return None
    key = found.next
    period = [found.bic, found.currency, found.start.isoformat(), found.end.isoformat()]
    return cursor.pack([*period, found.page + 1, key.booked_at.isoformat(), key.debit, str(key.id)])


def _decode_cursor(value: str, bic: str, currency: str) -> tuple[datetime, datetime, int, PostingKey]:
    """The period and the next page's place; a cursor of another account's statement is
    not this one's."""
    try:
        owner, ccy, start, end, page, at, debit, id_ = cursor.unpack(value)
        period = (cursor.parse_time(start), cursor.parse_time(end))
        key = PostingKey(cursor.parse_time(at), debit, uuid.UUID(id_))
        if not (isinstance(page, int) and page > 1 and isinstance(debit, bool)):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, AttributeError):
        raise cursor.invalid() from None
    if (owner, ccy) != (bic, currency):
        raise Problem(400, "cursor belongs to another account's statement", kind="invalid-cursor")
    return *period, page, key


@router.get(
    "/{currency}/statement",
    response_model=StatementOut,
    responses={
        200: {
            "content": {"application/xml": {}},
            "description": "JSON, or camt.053.001.08 with Accept: application/xml",
        }
    },
)
async def statement(
    currency: str,
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    settings: SettingsDep,
    bic: BankQuery = None,
    start: Annotated[
        QueryTime | None,
        Query(alias="from", description="inclusive, with its UTC offset; default: the start of to's day (UTC)"),
    ] = None,
    end: Annotated[
        QueryTime | None, Query(alias="to", description="exclusive, with its UTC offset; default: now")
    ] = None,
    cursor_: Annotated[str | None, Query(alias="cursor", max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=statements.MAX_PAGE)] = 1000,
) -> StatementOut | Response:
    """The bank's token account in `currency` over [from, to): the period's opening and
    closing booked balances and its postings with their references, `limit` at a time
    (pass `next_cursor` back as `cursor`; the cursor carries the period), such that
    opening + postings = closing, and on each page page_opening + its postings =
    page_closing. `to` is capped at the moment before which every posting is committed
    (normally about a second ago): a period once answered never changes."""
    owner = await _whose(session, caller, bic)
    if currency not in MINOR_UNITS:
        raise Problem(
            404, f"no accounts in {currency}: not an ISO 4217 currency DelTran knows", kind="unknown-currency"
        )
    await session.close()  # the statement reads in its own snapshot
    if cursor_ is not None:
        start, end, page, after = _decode_cursor(cursor_, owner, currency)
    else:
        start, end, page, after = *_period(start, end), 1, None
        end = min(end, await statements.complete_until(request.app.state.sessions))
        if end <= start:
            committed = f"must be earlier than {end.isoformat()}, before which every posting is committed"
            raise invalid_query(("from", committed))
    try:
        found = await statements.statement(
            request.app.state.sessions, owner, currency, start, end, after=after, page=page, limit=limit
        )
    except statements.TooFarBack:
        raise invalid_query(("from", "the period starts too far back to work out its balances in time")) from None
    if wants_xml(request.headers.get("accept", "")):
        return await _camt053(found, settings.bic)
    ccy = currency
    return StatementOut(
        bic=owner,
        currency=ccy,
        account=account_id(owner, ccy),
        start=found.start,
        end=found.end,
        opening_balance=format_amount(found.opening, ccy),
        closing_balance=format_amount(found.closing, ccy),
        page=found.page,
        page_opening_balance=format_amount(found.page_opening, ccy),
        page_closing_balance=format_amount(found.page_closing, ccy),
        postings=[
            PostingOut(
                id=p.id,
                booked_at=p.booked_at,
                direction="CRDT" if p.credit else "DBIT",
                amount=format_amount(p.amount, ccy),
                kind=p.kind.value,
                obligation_id=p.obligation_id,
                payment_id=p.payment_id,
                end_to_end_id=p.end_to_end_id,
                uetr=p.uetr,
                counterparty_bic=p.counterparty_bic,
                camt054_entry_reference=p.entry_reference,
                bank_reference=p.bank_reference,
            )
            for p in found.postings
        ],
        next_cursor=_encode_cursor(found),
        read_at=found.read_at,
    )


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[from, to) as asked; to defaults to now, from to the start of to's UTC day."""
    problems = time_problems(**{"from": start, "to": end})
    if problems:
        raise invalid_query(*problems)
    end = end or datetime.now(UTC)
    if start is None:
        last = (end - timedelta(microseconds=1)).astimezone(UTC)
        start = last.replace(hour=0, minute=0, second=0, microsecond=0)
    if start >= end:
        raise invalid_query(("to", "must be later than from"))
    return start, end


async def _camt053(found: Statement, servicer_bic: str) -> Response:
    """Written and validated off the event loop (a page of 5,000 entries is about 0.45 s of
    CPU); an amount beyond camt.053's 18 digits is a 406: the JSON has it."""
    message_id = "DTS" + uuid.uuid4().hex
    try:
        body = await to_thread.run_sync(lambda: build_camt053(found, servicer_bic=servicer_bic, message_id=message_id))
    except Camt053Invalid as invalid:
        raise Problem(
            406,
            f"this statement cannot be written as camt.053.001.08 ({invalid.errors[0]}); ask for JSON",
            kind="not-representable",
        ) from None
    return Response(body, media_type="application/xml")
