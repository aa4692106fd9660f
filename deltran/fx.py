"""FX providers, the pairs the admin allows, rate sheets and quotes (the pricing rules
are deltran/domain/fx.py).

- The admin allows a pair (`set_pair`) with its limits: the widest spread a sheet may
  post and the longest a quote lives. Removing a pair withdraws every sheet for it.
- An FX provider (a participant with `fx_provider`) posts its whole sheet at once
  (`post_rates`): one bid/ask per allowed pair, valid until a time; a pair it leaves
  out is withdrawn. It then holds accounts in every currency it prices.
- A debtor agent asks for a quote (`quote`): the best rate among the active providers
  other than itself whose sheet for the pair is valid, both amounts rounded by the
  stated rule, expiring at the earlier of the pair's lifetime and the sheet's validity.
- A quote is taken once, by one payment of the debtor agent that asked for it, before
  it expires (`take`: one conditional UPDATE, so forty payments naming it at once get
  it once).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from deltran import ledger
from deltran.db.tables import FxPair, FxQuote, FxRate, Participant
from deltran.domain import fx
from deltran.errors import Conflict, Forbidden, NotFound, Refused
from deltran.money import MINOR_UNITS, AmountError, parse_amount
from deltran.observability import metrics
from deltran.vocabulary import AccountKind, FxFixedSide, FxQuoteStatus, ParticipantStatus

# The longest a quote may live, whatever the admin sets: a locked rate is a risk the
# provider carries. A sheet is valid for at most a week.
MAX_QUOTE_LIFETIME_S = 24 * 3600
MAX_SHEET_VALIDITY = timedelta(days=7)
# Amounts DelTran stores: fewer than 18 integer digits (deltran/money.py parse_amount).
_MAX_AMOUNT = Decimal(10) ** 18
# Serializes changes to the allowed pairs (a pair and its inverse are never both allowed).
_PAIRS_LOCK = 0x46585041  # "FXPA"


@dataclass(frozen=True)
class PostedRate:
    pair: str
    bid: Decimal
    ask: Decimal
    valid_until: datetime


def _refused(detail: str, field: str, kind: str = "invalid-fx-request") -> Refused:
    return Refused(detail, kind=kind, errors=[{"field": field, "message": detail}])


def parse_pair(text: str, field: str = "pair") -> fx.Pair:
    try:
        return fx.Pair.parse(text)
    except fx.FxError as exc:
        raise _refused(str(exc), field) from None


async def _lock(session: AsyncSession, what: str, participant_id: uuid.UUID) -> None:
    """A transaction lock on one participant's sheet or quotes (advisory: the participant's
    row stays free for the inserts that reference it)."""
    await session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"fx:{what}:{participant_id}", 0))))


async def _now(session: AsyncSession) -> datetime:
    """The database's clock: the one quotes expire by (`take`)."""
    now = await session.scalar(select(func.now()))
    assert now is not None
    return now


# -- pairs (admin) --------------------------------------------------------------------------


async def set_pair(
    session: AsyncSession,
    pair: fx.Pair,
    max_spread: Decimal,
    max_quote_lifetime_s: int,
    cleared: Collection[str] | None = None,
) -> FxPair:
    """Allow a pair, or change its limits (sheets already posted keep their rates until
    replaced; new quotes take the new lifetime). `cleared`: the currencies DelTran clears
    — a pair's legs settle in both, so each must be one."""
    if cleared is not None and (uncleared := [c for c in (pair.base, pair.quote) if c not in cleared]):
        raise _refused(
            f"{', '.join(uncleared)} is not cleared by DelTran (it clears {', '.join(cleared)}): a cross-currency"
            " payment settles a leg in each currency of its pair",
            "pair",
            kind="currency-not-cleared",
        )
    if not (max_spread.is_finite() and 0 <= max_spread < 1):
        raise _refused("max_spread is a fraction of the mid rate, at least 0 and below 1", "max_spread")
    if not 0 < max_quote_lifetime_s <= MAX_QUOTE_LIFETIME_S:
        raise _refused(f"max_quote_lifetime_s is between 1 and {MAX_QUOTE_LIFETIME_S}", "max_quote_lifetime_s")
    await session.execute(select(func.pg_advisory_xact_lock(_PAIRS_LOCK)))
    inverse = await session.scalar(select(FxPair.pair).where(FxPair.pair == f"{pair.quote}/{pair.base}"))
    if inverse:
        raise Conflict(f"{inverse} is already allowed: a pair is priced one way round", kind="fx-pair-inverse-exists")
    row = await session.scalar(
        insert(FxPair)
        .values(pair=str(pair), max_spread=max_spread, max_quote_lifetime_s=max_quote_lifetime_s)
        .on_conflict_do_update(
            index_elements=[FxPair.pair],
            set_={"max_spread": max_spread, "max_quote_lifetime_s": max_quote_lifetime_s, "updated_at": func.now()},
        )
        .returning(FxPair)
    )
    assert row is not None
    for side in FxFixedSide:  # its quotes counted from zero (a dashboard shows 0, not "No data")
        metrics.fx_quotes.labels(str(pair), side.value)
    return row


async def remove_pair(session: AsyncSession, pair: fx.Pair) -> None:
    """Disallow a pair: its sheets go with it; quotes already given stay usable until
    they expire (their rate is locked)."""
    if await session.scalar(delete(FxPair).where(FxPair.pair == str(pair)).returning(FxPair.pair)) is None:
        raise NotFound(f"pair {pair} is not allowed", kind="fx-pair-not-found")


async def pairs(session: AsyncSession, *, lock: bool = False) -> list[FxPair]:
    """The allowed pairs; `lock`: FOR SHARE, so none is removed until the caller commits."""
    query = select(FxPair).order_by(FxPair.pair)
    return list(await session.scalars(query.with_for_update(read=True) if lock else query))


# -- rate sheets (providers) ----------------------------------------------------------------


async def post_rates(session: AsyncSession, provider: Participant, rates: list[PostedRate]) -> list[FxRate]:
    """Replace the provider's sheet with `rates` (every pair allowed, each rate within
    its pair's spread, valid in the future, no pair twice)."""
    now = await _now(session)
    _must_provide(provider)
    if provider.status != ParticipantStatus.ACTIVE:
        raise Conflict(f"{provider.bic} is {provider.status}", kind="participant-suspended")
    # One sheet change per provider at a time (its delete-then-insert would otherwise
    # collide with another's), and its pairs kept until it commits.
    await _lock(session, "sheet", provider.id)
    allowed = {row.pair: row for row in await pairs(session, lock=True)}
    seen: set[str] = set()
    for i, rate in enumerate(rates):
        field = f"rates[{i}]"
        pair = parse_pair(rate.pair, f"{field}.pair")
        limits = allowed.get(str(pair))
        if limits is None:
            raise _refused(f"pair {pair} is not allowed (allowed: {', '.join(allowed) or 'none'})", f"{field}.pair")
        if str(pair) in seen:
            raise _refused(f"pair {pair} is posted twice", f"{field}.pair")
        seen.add(str(pair))
        try:
            fx.check_rate(rate.bid, rate.ask, limits.max_spread)
        except fx.FxError as exc:
            raise _refused(str(exc), f"{field}.bid") from None
        if not now < rate.valid_until <= now + MAX_SHEET_VALIDITY:
            raise _refused(
                f"valid_until {rate.valid_until.isoformat()} is not in the next {MAX_SHEET_VALIDITY.days} days",
                f"{field}.valid_until",
            )
    await session.execute(delete(FxRate).where(FxRate.provider_id == provider.id))
    if rates:
        await session.execute(
            insert(FxRate),
            [
                {"provider_id": provider.id, "pair": r.pair, "bid": r.bid, "ask": r.ask, "valid_until": r.valid_until}
                for r in rates
            ],
        )
    for currency in sorted({c for r in rates for c in r.pair.split("/")}):
        await ledger.ensure_accounts(session, [provider.id], currency, kinds=list(AccountKind))
    return await sheet(session, provider)


async def sheet(session: AsyncSession, provider: Participant) -> list[FxRate]:
    """The provider's sheet as held."""
    _must_provide(provider)
    return list(await session.scalars(select(FxRate).where(FxRate.provider_id == provider.id).order_by(FxRate.pair)))


def _must_provide(provider: Participant) -> None:
    if not provider.fx_provider:
        raise Forbidden(f"{provider.bic} is not an FX provider", kind="not-an-fx-provider")


# -- quotes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteRequest:
    source_currency: str
    target_currency: str
    source_amount: str | None = None
    target_amount: str | None = None


async def quote(
    session: AsyncSession,
    debtor_agent: Participant,
    request: QuoteRequest,
    *,
    max_open: int,
    cleared: Collection[str] | None = None,
) -> FxQuote:
    """Lock the best rate for one payment of `debtor_agent` (see the module docstring),
    which may hold at most `max_open` quotes still usable; `cleared`: the currencies
    DelTran clears (a pair allowed before one stopped being cleared quotes no more)."""
    now = await _now(session)
    source, target = request.source_currency, request.target_currency
    for field, currency in (("source_currency", source), ("target_currency", target)):
        if currency not in MINOR_UNITS:
            raise _refused(f"currency {currency!r} is not supported", field)
        if cleared is not None and currency not in cleared:
            raise _refused(f"{currency} is not cleared by DelTran", field, kind="currency-not-cleared")
    if source == target:
        raise _refused("source and target currency are the same: no FX needed", "target_currency")
    if (request.source_amount is None) == (request.target_amount is None):
        raise _refused("give either source_amount (what leaves) or target_amount (what arrives)", "source_amount")
    if debtor_agent.status != ParticipantStatus.ACTIVE:
        raise Conflict(f"{debtor_agent.bic} is {debtor_agent.status}", kind="participant-suspended")
    # Counted under a lock of the debtor agent's quotes: forty requests at once cannot all pass.
    await _lock(session, "quotes", debtor_agent.id)
    held = await session.scalar(
        select(func.count())
        .select_from(FxQuote)
        .where(
            FxQuote.debtor_agent_id == debtor_agent.id,
            # Only the last day's can still be usable: the count reads that much, not history.
            FxQuote.created_at > now - timedelta(seconds=MAX_QUOTE_LIFETIME_S),
            FxQuote.status == FxQuoteStatus.OPEN,
            FxQuote.expires_at > now,
        )
    )
    if held is not None and held >= max_open:
        raise Conflict(
            f"{debtor_agent.bic} already holds {held} usable quotes (at most {max_open}): use one or let them expire",
            kind="too-many-open-fx-quotes",
        )
    limits = await session.scalar(
        select(FxPair).where(FxPair.pair.in_([f"{source}/{target}", f"{target}/{source}"])).order_by(FxPair.pair)
    )
    if limits is None:
        raise _refused(f"FX between {source} and {target} is not allowed", "target_currency")
    fixed_field, fixed_currency = (
        ("source_amount", source) if request.source_amount is not None else ("target_amount", target)
    )
    try:
        fixed_amount = parse_amount(request.source_amount or request.target_amount or "", fixed_currency)
    except AmountError as exc:
        raise _refused(str(exc), fixed_field) from None
    candidates = (
        await session.execute(
            select(FxRate, Participant.bic)
            .join(Participant, Participant.id == FxRate.provider_id)
            .where(
                FxRate.pair == limits.pair,
                FxRate.valid_until > now,
                Participant.fx_provider,
                Participant.status == ParticipantStatus.ACTIVE,
                Participant.id != debtor_agent.id,
            )
            # A sheet being replaced is either read whole before, or after, the change.
            .with_for_update(read=True, of=FxRate)
        )
    ).all()
    by_bic = {bic: row for row, bic in candidates}
    chosen = fx.best(
        [
            fx.Rate(bic, fx.Pair.parse(row.pair), row.bid, row.ask, row.valid_until, row.posted_at)
            for row, bic in candidates
        ],
        source,
        target,
    )
    if chosen is None:
        raise Conflict(f"no FX provider prices {source} → {target} now: ask again later", kind="no-fx-rate")
    rate_sheet, rate = chosen
    if request.source_amount is not None:
        source_amount, target_amount = fixed_amount, fx.target_for(fixed_amount, rate, target)
        fixed = FxFixedSide.SOURCE
    else:
        source_amount, target_amount = fx.source_for(fixed_amount, rate, source), fixed_amount
        fixed = FxFixedSide.TARGET
    if target_amount <= 0:
        raise _refused(f"{source_amount} {source} converts to less than one minor unit of {target}", fixed_field)
    if max(source_amount, target_amount) >= _MAX_AMOUNT:
        raise _refused(f"{source_amount} {source} → {target_amount} {target} is too large", fixed_field)
    expires_at = min(now + timedelta(seconds=limits.max_quote_lifetime_s), rate_sheet.valid_until)
    row = FxQuote(
        id=uuid.uuid4(),
        debtor_agent_id=debtor_agent.id,
        provider_id=by_bic[rate_sheet.provider].provider_id,
        source_currency=source,
        source_amount=source_amount,
        target_currency=target,
        target_amount=target_amount,
        rate=rate,
        fixed=fixed,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    metrics.fx_quotes.labels(limits.pair, fixed.value).inc()
    return row


async def get_quote(session: AsyncSession, quote_id: uuid.UUID, participant_id: uuid.UUID | None) -> FxQuote:
    """A quote, for its debtor agent or its provider (None: the admin)."""
    row = await session.get(FxQuote, quote_id)
    if row is None or (participant_id is not None and participant_id not in (row.debtor_agent_id, row.provider_id)):
        raise NotFound(f"no quote {quote_id}", kind="fx-quote-not-found")
    return row


async def open_quote_of(
    session: AsyncSession,
    debtor_agent_id: uuid.UUID,
    *,
    source: tuple[Decimal, str],
    target: tuple[Decimal, str],
    rate: Decimal | None,
) -> uuid.UUID | None:
    """The debtor agent's oldest usable quote of exactly these terms (a pacs.008 states the
    terms, not the quote), locked; one a concurrent payment has locked is passed over, so
    two payments of the same terms take two quotes."""
    query = (
        select(FxQuote.id)
        .where(
            FxQuote.debtor_agent_id == debtor_agent_id,
            FxQuote.status == FxQuoteStatus.OPEN,
            FxQuote.expires_at > func.clock_timestamp(),
            FxQuote.source_amount == source[0],
            FxQuote.source_currency == source[1],
            FxQuote.target_amount == target[0],
            FxQuote.target_currency == target[1],
        )
        .order_by(FxQuote.created_at, FxQuote.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if rate is not None:
        query = query.where(FxQuote.rate == rate)
    return await session.scalar(query)


async def take(
    session: AsyncSession, quote_id: uuid.UUID, debtor_agent_id: uuid.UUID, payment_id: uuid.UUID
) -> FxQuote:
    """The quote, now used by `payment_id`: at most once, by its own debtor agent, before
    it expires. The same payment taking it again gets it again (a retried step)."""
    other = await session.scalar(select(FxQuote.id).where(FxQuote.payment_id == payment_id, FxQuote.id != quote_id))
    if other is not None:
        raise Conflict(f"payment {payment_id} already uses quote {other}", kind="fx-quote-used")
    taken = await session.scalar(
        update(FxQuote)
        .where(
            FxQuote.id == quote_id,
            FxQuote.debtor_agent_id == debtor_agent_id,
            FxQuote.status == FxQuoteStatus.OPEN,
            FxQuote.expires_at > func.clock_timestamp(),  # now, not when the transaction began
        )
        .values(status=FxQuoteStatus.USED, payment_id=payment_id, used_at=func.now())
        .returning(FxQuote)
    )
    if taken is not None:
        return taken
    row = await session.get(FxQuote, quote_id, populate_existing=True)
    if row is None or row.debtor_agent_id != debtor_agent_id:
        raise NotFound(f"no quote {quote_id}", kind="fx-quote-not-found")
    if row.payment_id == payment_id:
        return row
    if row.status == FxQuoteStatus.USED:
        raise Conflict(f"quote {quote_id} was used by payment {row.payment_id}", kind="fx-quote-used")
    raise Refused(f"quote {quote_id} expired at {row.expires_at.isoformat()}", kind="fx-quote-expired")
