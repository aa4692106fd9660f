"""`/v1/fx`: FX providers post their rate sheets, debtor agents lock a quote, and the
admin allows pairs and sets their limits (`/v1/admin/fx/pairs`). The rules live in
deltran/fx.py and deltran/domain/fx.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from api.deps import AdminDep, BankDep, CallerDep, SessionDep, SettingsDep
from api.problems import problem_responses
from api.schemas import AmountText
from api.strict_json import StrictJSONRoute
from deltran import audit, fx
from deltran.db.tables import FxPair, FxQuote, FxRate, Participant
from deltran.errors import Forbidden
from deltran.money import format_amount, format_rate

router = APIRouter(tags=["fx"], responses=problem_responses(400, 403, 404, 409, 422), route_class=StrictJSONRoute)

PairText = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}/[A-Z]{3}$")]
RateText = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,11}(\.[0-9]{1,10})?$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]


class RateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pair: PairText = Field(description="BASE/QUOTE, allowed by the admin", examples=["AED/INR"])
    bid: RateText = Field(description="QUOTE per one BASE the provider buys BASE at", examples=["22.6100"])
    ask: RateText = Field(description="QUOTE per one BASE the provider sells BASE at (≥ bid)", examples=["22.6500"])
    valid_until: AwareDatetime = Field(description="the rate quotes no later than this")


class RatesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rates: list[RateIn] = Field(max_length=100, description="the whole sheet: a pair left out is withdrawn")


class RateOut(BaseModel):
    pair: str
    bid: str
    ask: str
    valid_until: datetime
    posted_at: datetime


class RatesOut(BaseModel):
    provider_bic: str
    rates: list[RateOut]


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_currency: Currency = Field(examples=["AED"])
    target_currency: Currency = Field(examples=["INR"])
    source_amount: AmountText | None = Field(default=None, description="what leaves (the payer fixes it)")
    target_amount: AmountText | None = Field(default=None, description="what arrives (the payee's side fixes it)")


class QuoteOut(BaseModel):
    quote_id: uuid.UUID
    rate: str = Field(description="target per one source: IntrBkSttlmAmt = InstdAmt × rate (pacs.008 XchgRate)")
    source_currency: str
    source_amount: str
    target_currency: str
    target_amount: str
    provider_bic: str
    expires_at: datetime
    fixed: str = Field(
        description="SOURCE or TARGET: the side given, the other rounded to favour neither payee nor payer"
    )
    status: str = Field(description="OPEN until a payment uses it (USED); past expires_at it can no longer be used")
    payment_id: uuid.UUID | None


class PairIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_spread: Annotated[str, StringConstraints(pattern=r"^0(\.[0-9]{1,8})?$")] = Field(
        description="widest (ask − bid) / mid a sheet may post, e.g. 0.01 for 1 %", examples=["0.01"]
    )
    max_quote_lifetime_s: int = Field(ge=1, le=fx.MAX_QUOTE_LIFETIME_S, description="the longest a quote lives")


class PairOut(BaseModel):
    pair: str
    max_spread: str
    max_quote_lifetime_s: int
    updated_at: datetime


class PairList(BaseModel):
    pairs: list[PairOut]


def _rate_out(row: FxRate) -> RateOut:
    return RateOut(
        pair=row.pair,
        bid=format_rate(row.bid),
        ask=format_rate(row.ask),
        valid_until=row.valid_until,
        posted_at=row.posted_at,
    )


async def quote_out(session, row: FxQuote) -> QuoteOut:
    provider = await session.get(Participant, row.provider_id)
    return QuoteOut(
        quote_id=row.id,
        rate=format_rate(row.rate),
        source_currency=row.source_currency,
        source_amount=format_amount(row.source_amount, row.source_currency),
        target_currency=row.target_currency,
        target_amount=format_amount(row.target_amount, row.target_currency),
        provider_bic=provider.bic,
        expires_at=row.expires_at,
        fixed=row.fixed,
        status=row.status,
        payment_id=row.payment_id,
    )


def _pair_out(row: FxPair) -> PairOut:
    return PairOut(
        pair=row.pair,
        max_spread=format_rate(row.max_spread),
        max_quote_lifetime_s=row.max_quote_lifetime_s,
        updated_at=row.updated_at,
    )


# -- providers ------------------------------------------------------------------------------


@router.put("/v1/fx/rates", response_model=RatesOut)
async def post_rates(body: RatesIn, caller: BankDep, session: SessionDep) -> RatesOut:
    """Post your whole rate sheet (FX providers): one bid/ask per allowed pair, in QUOTE
    per one BASE, valid until a time; a pair you leave out is withdrawn, an empty list
    withdraws all. Each rate within the pair's max spread (`422` otherwise). Quotes
    already given keep their locked rate."""
    async with session.begin():
        provider = await session.get(Participant, caller.participant_id)
        assert provider is not None
        rows = await fx.post_rates(
            session,
            provider,
            [fx.PostedRate(r.pair, Decimal(r.bid), Decimal(r.ask), r.valid_until) for r in body.rates],
        )
        await audit.record(
            session,
            actor=caller.identity,
            action="fx.rates",
            subject=provider.bic,
            result="ok",
            details={"rates": [{"pair": r.pair, "bid": r.bid, "ask": r.ask} for r in body.rates]},
        )
    return RatesOut(provider_bic=provider.bic, rates=[_rate_out(r) for r in rows])


@router.get("/v1/fx/rates", response_model=RatesOut)
async def get_rates(caller: BankDep, session: SessionDep) -> RatesOut:
    """Your rate sheet as DelTran holds it (FX providers)."""
    provider = await session.get(Participant, caller.participant_id)
    assert provider is not None
    return RatesOut(provider_bic=provider.bic, rates=[_rate_out(r) for r in await fx.sheet(session, provider)])


# -- quotes ---------------------------------------------------------------------------------


@router.post("/v1/fx/quotes", status_code=status.HTTP_201_CREATED, response_model=QuoteOut)
async def create_quote(body: QuoteIn, caller: BankDep, session: SessionDep, settings: SettingsDep) -> QuoteOut:
    """Lock a rate for one cross-currency payment (debtor agents): give either the
    `source_amount` (what leaves) or the `target_amount` (what arrives). DelTran takes
    the best rate among the FX providers pricing the pair now and rounds the other side
    to its currency's minor units — down for what arrives, up for what leaves. The quote
    is used once, by a payment naming it (`fx_quote_id`), before `expires_at`. No
    provider prices the pair now: `409` `no-fx-rate`; already holding
    `DELTRAN_FX_MAX_OPEN_QUOTES` usable quotes: `409` `too-many-open-fx-quotes`."""
    async with session.begin():
        debtor_agent = await session.get(Participant, caller.participant_id)
        assert debtor_agent is not None
        row = await fx.quote(
            session,
            debtor_agent,
            fx.QuoteRequest(body.source_currency, body.target_currency, body.source_amount, body.target_amount),
            max_open=settings.fx_max_open_quotes,
            cleared=settings.supported_currencies,
        )
    return await quote_out(session, row)


@router.get("/v1/fx/quotes/{quote_id}", response_model=QuoteOut)
async def get_quote(quote_id: uuid.UUID, caller: CallerDep, session: SessionDep) -> QuoteOut:
    """A quote, for the debtor agent that asked for it, its provider, or the admin."""
    if caller.role == "settlement_agent":
        raise Forbidden("quotes are for their banks and the admin", kind="forbidden")
    row = await fx.get_quote(session, quote_id, caller.participant_id if caller.role == "bank" else None)
    return await quote_out(session, row)


# -- pairs (admin) --------------------------------------------------------------------------

BaseCurrency = Annotated[str, Path(pattern=r"^[A-Z]{3}$", examples=["AED"])]
QuoteCurrency = Annotated[str, Path(pattern=r"^[A-Z]{3}$", examples=["INR"])]


@router.get("/v1/admin/fx/pairs", response_model=PairList)
async def list_pairs(_: AdminDep, session: SessionDep) -> PairList:
    return PairList(pairs=[_pair_out(row) for row in await fx.pairs(session)])


@router.put("/v1/admin/fx/pairs/{base}/{quote}", response_model=PairOut)
async def set_pair(
    base: BaseCurrency,
    quote: QuoteCurrency,
    body: PairIn,
    caller: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
) -> PairOut:
    """Allow FX in BASE/QUOTE (both directions; providers price it as written), or
    change its limits."""
    pair = fx.parse_pair(f"{base}/{quote}")
    async with session.begin():
        row = await fx.set_pair(
            session, pair, Decimal(body.max_spread), body.max_quote_lifetime_s, settings.supported_currencies
        )
        await audit.record(
            session,
            actor=caller.identity,
            action="fx.pair",
            subject=str(pair),
            result="ok",
            details={"max_spread": body.max_spread, "max_quote_lifetime_s": body.max_quote_lifetime_s},
        )
    return _pair_out(row)


@router.delete("/v1/admin/fx/pairs/{base}/{quote}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_pair(base: BaseCurrency, quote: QuoteCurrency, caller: AdminDep, session: SessionDep) -> Response:
    """Disallow the pair: every sheet for it is withdrawn; quotes given stay usable."""
    pair = fx.parse_pair(f"{base}/{quote}")
    async with session.begin():
        await fx.remove_pair(session, pair)
        await audit.record(session, actor=caller.identity, action="fx.pair_removed", subject=str(pair), result="ok")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
