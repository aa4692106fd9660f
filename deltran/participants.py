"""Participants and operator keys: creating banks, issuing keys, the demo set.

Keys are random, shown once (returned to the caller) and stored as digests only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deltran.api_keys import generate_key, hash_key
from deltran.db.tables import FxPair, NetDebitCap, OperatorKey, Participant
from deltran.identity import normalize_bic
from deltran.vocabulary import OperatorRole, ParticipantStatus


@dataclass(frozen=True)
class DemoBank:
    bic: str
    name: str
    country: str
    fx_provider: bool = False


# The UAE ↔ India corridor first, then enough banks across AE, IN, US and the euro
# area for netting demos.
DEMO_BANKS: tuple[DemoBank, ...] = (
    DemoBank("EBILAEAD", "Emirates NBD", "AE"),
    DemoBank("SBININBB", "State Bank of India", "IN"),
    DemoBank("NBADAEAA", "First Abu Dhabi Bank", "AE"),
    DemoBank("ADCBAEAA", "Abu Dhabi Commercial Bank", "AE"),
    DemoBank("MASHAEAD", "Mashreq Bank", "AE", fx_provider=True),  # quotes AED/INR (deltran/fx.py)
    DemoBank("HDFCINBB", "HDFC Bank", "IN"),
    DemoBank("ICICINBB", "ICICI Bank", "IN"),
    DemoBank("UTIBINBB", "Axis Bank", "IN"),
    DemoBank("CHASUS33", "JPMorgan Chase Bank", "US"),
    DemoBank("CITIUS33", "Citibank", "US"),
    DemoBank("DEUTDEFF", "Deutsche Bank", "DE"),
    DemoBank("BNPAFRPP", "BNP Paribas", "FR"),
    DemoBank("INGBNL2A", "ING Bank", "NL"),
)


# (pair, max spread, max quote lifetime in seconds)
DEMO_FX_PAIRS: tuple[tuple[str, Decimal, int], ...] = (("AED/INR", Decimal("0.01"), 300),)


class UnknownBank(LookupError):
    pass


class BankExists(ValueError):
    pass


async def create_bank(session: AsyncSession, bic: str, name: str, country: str, *, fx_provider: bool = False) -> str:
    """Add a new participant (an FX provider too, with `fx_provider`: deltran/fx.py);
    returns its API key, which is shown once and never stored."""
    bic = normalize_bic(bic)
    key = generate_key()
    inserted = await session.scalar(
        insert(Participant)
        .values(bic=bic, name=name, country=country.upper(), api_key_hash=hash_key(key), fx_provider=fx_provider)
        .on_conflict_do_nothing(index_elements=[Participant.bic])
        .returning(Participant.id)
    )
    if inserted is None:
        raise BankExists(f"participant {bic} already exists")
    return key


async def _upsert_demo_bank(session: AsyncSession, bank: DemoBank) -> str:
    key = generate_key()
    await session.execute(
        insert(Participant)
        .values(
            bic=bank.bic, name=bank.name, country=bank.country, api_key_hash=hash_key(key), fx_provider=bank.fx_provider
        )
        .on_conflict_do_update(
            index_elements=[Participant.bic],
            set_={
                "name": bank.name,
                "country": bank.country,
                "api_key_hash": hash_key(key),
                "fx_provider": bank.fx_provider,
            },
        )
    )
    return key


async def rotate_key(session: AsyncSession, bic: str) -> str:
    """Issue a new key; the old one stops working when this commits."""
    key = generate_key()
    updated = await session.scalar(
        update(Participant)
        .where(Participant.bic == normalize_bic(bic))
        .values(api_key_hash=hash_key(key))
        .returning(Participant.id)
    )
    if updated is None:
        raise UnknownBank(f"no participant {bic}")
    return key


async def set_status(session: AsyncSession, bic: str, status: str) -> None:
    """ACTIVE or SUSPENDED. A suspended bank's new payments are rejected by compliance."""
    assert status in tuple(ParticipantStatus)
    updated = await session.scalar(
        update(Participant).where(Participant.bic == normalize_bic(bic)).values(status=status).returning(Participant.id)
    )
    if updated is None:
        raise UnknownBank(f"no participant {bic}")


async def get_bank(session: AsyncSession, bic: str) -> Participant:
    bank = await session.scalar(select(Participant).where(Participant.bic == normalize_bic(bic)))
    if bank is None:
        raise UnknownBank(f"no participant {bic}")
    return bank


async def set_net_debit_cap(session: AsyncSession, bic: str, currency: str, cap: Decimal) -> None:
    bank = await get_bank(session, bic)
    await session.execute(
        insert(NetDebitCap)
        .values(participant_id=bank.id, currency=currency, cap=cap)
        .on_conflict_do_update(
            index_elements=[NetDebitCap.participant_id, NetDebitCap.currency],
            set_={"cap": cap, "updated_at": func.now()},
        )
    )


async def list_banks(session: AsyncSession) -> list[Participant]:
    return list((await session.scalars(select(Participant).order_by(Participant.bic))).all())


async def add_operator_key(session: AsyncSession, role: str) -> str:
    key = generate_key()
    session.add(OperatorKey(role=role, key_hash=hash_key(key)))
    await session.flush()
    return key


async def credentials_valid(session: AsyncSession, credentials: dict) -> bool:
    """Do these demo credentials still open the doors they claim to?"""
    try:
        bank_hashes = {bic: hash_key(key) for bic, key in credentials["banks"].items()}
        operators = {hash_key(credentials["settlement_agent"]), hash_key(credentials["admin"])}
    except (KeyError, TypeError, AttributeError):
        return False
    stored = dict((await session.execute(select(Participant.bic, Participant.api_key_hash))).all())
    if any(stored.get(bic) != digest for bic, digest in bank_hashes.items()):
        return False
    if set(b.bic for b in DEMO_BANKS) - set(bank_hashes):
        return False
    providers = credentials.get("fx_providers")
    if providers != {b.bic: credentials["banks"][b.bic] for b in DEMO_BANKS if b.fx_provider}:
        return False
    found = await session.scalars(
        select(OperatorKey.key_hash).where(OperatorKey.key_hash.in_(operators), OperatorKey.revoked_at.is_(None))
    )
    return set(found.all()) == operators


async def seed_demo(sessions: async_sessionmaker, credentials_path: Path) -> dict:
    """Seed the demo banks and keys, idempotently: existing valid credentials are kept;
    otherwise fresh keys are issued, the old operator keys revoked, and the file
    rewritten (0600, it holds secrets)."""
    current = None
    if credentials_path.exists():  # noqa: ASYNC240 -- one small local file, read once per seeding
        try:
            current = json.loads(credentials_path.read_text())  # noqa: ASYNC240
        except ValueError:
            current = None
    async with sessions() as session, session.begin():
        # The corridor's pair, allowed with demo limits unless the admin has set its own
        # (or allowed its inverse).
        for pair, spread, lifetime in DEMO_FX_PAIRS:
            base, quote = pair.split("/")
            await session.execute(
                insert(FxPair)
                .from_select(
                    ["pair", "max_spread", "max_quote_lifetime_s"],
                    select(literal(pair), literal(spread), literal(lifetime)).where(
                        ~exists().where(FxPair.pair == f"{quote}/{base}")
                    ),
                )
                .on_conflict_do_nothing(index_elements=[FxPair.pair])
            )
        if current is not None and await credentials_valid(session, current):
            return current
        banks = {b.bic: await _upsert_demo_bank(session, b) for b in DEMO_BANKS}
        await _revoke_demo_operator_keys(session, current)
        credentials = {
            "banks": banks,
            # FX providers are participants too: the same key as under "banks".
            "fx_providers": {b.bic: banks[b.bic] for b in DEMO_BANKS if b.fx_provider},
            "settlement_agent": await add_operator_key(session, OperatorRole.SETTLEMENT_AGENT),
            "admin": await add_operator_key(session, OperatorRole.ADMIN),
        }
    credentials_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = credentials_path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(credentials, f, indent=2)
    tmp.replace(credentials_path)
    return credentials


async def _revoke_demo_operator_keys(session: AsyncSession, stale: dict | None) -> None:
    """Revoke the operator keys of a stale demo credentials file (and only those)."""
    if not isinstance(stale, dict):
        return
    keys = [stale.get("settlement_agent"), stale.get("admin")]
    digests = [hash_key(k) for k in keys if isinstance(k, str)]
    if digests:
        await session.execute(
            update(OperatorKey)
            .where(OperatorKey.key_hash.in_(digests), OperatorKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
        )
