"""The PostgreSQL schema as SQLAlchemy tables. Alembic migrations under `migrations/`
create it; this module is what the code queries. Money is NUMERIC, never float.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deltran.vocabulary import (
    CREDIT_NORMAL_KINDS,
    AccountKind,
    BreakerState,
    CancellationStatus,
    DeliveryStatus,
    EntryOutcome,
    EventType,
    FundingStatus,
    FxFixedSide,
    FxQuoteStatus,
    ObligationLeg,
    ObligationStatus,
    OperatorRole,
    ParticipantStatus,
    PaymentStatus,
    ReconciliationTier,
    RedemptionStatus,
    RefundStatus,
    SettlementMode,
    TransferKind,
    WindowStatus,
    sql_in,
)

# 38 digits with 5 decimals covers every ISO 4217 currency with room to spare.
Money = Numeric(38, 5)
# An exchange rate as ISO 20022 states one (BaseOneRate: 11 digits, 10 of them decimals).
FxRateNumber = Numeric(21, 10)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """A model's table, typed as one: for Core statements on it (built once, no ORM
    unit of work or bulk-update bookkeeping on the hot paths)."""
    return cast(Table, model.__table__)


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Participant(Base):
    """A bank on the network. Its API key is stored as a SHA-256 digest only."""

    __tablename__ = "participants"
    id: Mapped[uuid.UUID] = _uuid_pk()
    bic: Mapped[str] = mapped_column(String(11), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(140), nullable=False)
    country: Mapped[str] = mapped_column(String(2), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default=ParticipantStatus.ACTIVE.value)
    api_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Quotes FX (deltran/fx.py): posts rate sheets and takes the legs of cross-currency payments.
    fx_provider: Mapped[bool] = mapped_column(nullable=False, server_default=text("false"))
    created_at: Mapped[datetime] = _created_at()
    __table_args__ = (CheckConstraint(sql_in("status", ParticipantStatus), name="status"),)


class OperatorKey(Base):
    """Keys of the non-bank roles: the settlement agent (posts camt.054) and admin."""

    __tablename__ = "operator_keys"
    id: Mapped[uuid.UUID] = _uuid_pk()
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = _created_at()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (CheckConstraint(sql_in("role", OperatorRole), name="role"),)


class Account(Base):
    """A ledger account per bank and currency, TigerBeetle style: posted debits and
    credits only ever grow; the balance is derived. `fiat` accounts mirror the fiat a
    bank has booked on DelTran's settlement account (debit-normal); `token` accounts
    hold the bank's tokens, `reserved` its tokens set aside for a payout, `paid_out` the
    fiat paid out to it (all credit-normal). None may go below zero."""

    __tablename__ = "accounts"
    id: Mapped[uuid.UUID] = _uuid_pk()
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    kind: Mapped[str] = mapped_column(String(8), nullable=False)
    debits_posted: Mapped[Decimal] = mapped_column(Money, nullable=False, server_default="0")
    credits_posted: Mapped[Decimal] = mapped_column(Money, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _created_at()
    __table_args__ = (
        UniqueConstraint("participant_id", "currency", "kind", name="uq_accounts_owner"),
        CheckConstraint(sql_in("kind", AccountKind), name="kind"),
        CheckConstraint(
            f"({sql_in('kind', CREDIT_NORMAL_KINDS)} AND credits_posted >= debits_posted)"
            " OR (kind = 'fiat' AND debits_posted >= credits_posted)",
            name="balance_not_negative",
        ),
    )


class LedgerTransfer(Base):
    """One double-entry transfer: `amount` leaves the debit account and reaches the
    credit account, both in `currency`. The idempotency key makes every posting
    happen at most once, however often an activity retries."""

    __tablename__ = "ledger_transfers"
    id: Mapped[uuid.UUID] = _uuid_pk()
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    debit_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    credit_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    obligation_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("obligations.id"))
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bank_notifications.id"))
    redemption_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("redemptions.id", use_alter=True))
    created_at: Mapped[datetime] = _created_at()
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint(sql_in("kind", TransferKind), name="kind"),
        # No index on obligation_id: an obligation's transfer is found by its
        # idempotency key ('obligation:<id>'), and every index here is paid per posting.
        # These two are paid for: a bank's statement reads its account's postings of a
        # period (deltran/statements.py) without scanning the ledger.
        Index("ix_ledger_transfers_debit_account", "debit_account_id", "created_at"),
        Index("ix_ledger_transfers_credit_account", "credit_account_id", "created_at"),
    )


class Payment(Base):
    """A payment as the instructing bank sent it. Unique on the sender's identity
    (instructing bank + EndToEndId); the fingerprint tells a duplicate from a conflict."""

    __tablename__ = "payments"
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    instructing_bic: Mapped[str] = mapped_column(String(11), nullable=False)
    end_to_end_id: Mapped[str] = mapped_column(String(35), nullable=False)
    uetr: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    debtor_name: Mapped[str] = mapped_column(String(140), nullable=False)
    debtor_iban: Mapped[str | None] = mapped_column(String(34))
    debtor_account: Mapped[str | None] = mapped_column(String(34))
    debtor_agent_bic: Mapped[str] = mapped_column(String(11), nullable=False)
    creditor_name: Mapped[str] = mapped_column(String(140), nullable=False)
    creditor_iban: Mapped[str | None] = mapped_column(String(34))
    creditor_account: Mapped[str | None] = mapped_column(String(34))
    creditor_agent_bic: Mapped[str] = mapped_column(String(11), nullable=False)
    remittance_info: Mapped[str | None] = mapped_column(String(140))
    # As received: "json" or the ISO message (e.g. "pacs.008.001.08") and its references.
    urgent: Mapped[bool] = mapped_column(nullable=False, server_default="false")
    risk_score: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    risk_factors: Mapped[dict | None] = mapped_column(JSONB)
    source_format: Mapped[str] = mapped_column(String(20), nullable=False, server_default="json")
    message_id: Mapped[str | None] = mapped_column(String(35))
    instruction_id: Mapped[str | None] = mapped_column(String(35))
    transaction_id: Mapped[str | None] = mapped_column(String(35))
    settlement_date: Mapped[date | None] = mapped_column(Date)
    charge_bearer: Mapped[str | None] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(24), nullable=False)
    rejection_code: Mapped[str | None] = mapped_column(String(8))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    __table_args__ = (
        UniqueConstraint("instructing_bic", "end_to_end_id", name="uq_payments_sender_identity"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(sql_in("status", PaymentStatus), name="status"),
        CheckConstraint("(debtor_iban IS NOT NULL) <> (debtor_account IS NOT NULL)", name="debtor_account"),
        CheckConstraint(
            "(creditor_iban IS NOT NULL) <> (creditor_account IS NOT NULL)",
            name="creditor_account",
        ),
        # A bank cannot pay itself (the intake refuses it with a 422 first).
        CheckConstraint("debtor_agent_bic <> creditor_agent_bic", name="distinct_agents"),
        Index("ix_payments_end_to_end_id", "end_to_end_id"),
        Index("ix_payments_status", "status"),
        # The risk engine's velocity count: a debtor account's recent payments at its bank.
        Index(
            "ix_payments_debtor_recent",
            "debtor_agent_bic",
            text("coalesce(debtor_iban, debtor_account)"),
            "created_at",
        ),
        # GET /v1/payments, newest first: a bank's sent and received payments (two ordered
        # scans merged), and every payment for admin. Keyset pages on (created_at, id).
        Index("ix_payments_debtor_listing", "debtor_agent_bic", "created_at", "id"),
        Index("ix_payments_creditor_listing", "creditor_agent_bic", "created_at", "id"),
        Index("ix_payments_listing", "created_at", "id"),
        # Status requests (pacs.028) by the sender's original MsgId or TxId.
        Index("ix_payments_message_id", "message_id", postgresql_where=text("message_id IS NOT NULL")),
        Index("ix_payments_transaction_id", "transaction_id", postgresql_where=text("transaction_id IS NOT NULL")),
    )


class ComplianceResult(Base):
    """The outcome of screening a payment; one per payment."""

    __tablename__ = "compliance_results"
    id: Mapped[uuid.UUID] = _uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), unique=True, nullable=False)
    passed: Mapped[bool] = mapped_column(nullable=False)
    reason_code: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'"))
    screened_at: Mapped[datetime] = _created_at()


class ClearingWindow(Base):
    __tablename__ = "clearing_windows"
    id: Mapped[uuid.UUID] = _uuid_pk()
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(24), nullable=False, server_default=WindowStatus.OPEN.value)
    opened_at: Mapped[datetime] = _created_at()
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    gross_amount: Mapped[Decimal | None] = mapped_column(Money)
    net_amount: Mapped[Decimal | None] = mapped_column(Money)
    # Closing: the clearing workflow that closes it (one close per window, retries
    # included), what netting found and how long it took, and how it settled.
    closed_by: Mapped[str | None] = mapped_column(String(200), unique=True)
    obligations_count: Mapped[int | None] = mapped_column(Integer)
    netting_efficiency: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    liquidity_saved: Mapped[Decimal | None] = mapped_column(Money)
    netting_ms: Mapped[int | None] = mapped_column(Integer)
    funding_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    settlement_reference: Mapped[str | None] = mapped_column(String(35))
    fallback_method: Mapped[str | None] = mapped_column(String(16))
    # What its cross-currency legs moved into escrow: the bank positions sum to minus it.
    escrowed_amount: Mapped[Decimal] = mapped_column(Money, nullable=False, server_default="0")
    __table_args__ = (
        CheckConstraint(sql_in("status", WindowStatus), name="status"),
        # At most one open window per currency.
        Index(
            "uq_clearing_windows_open_currency",
            "currency",
            unique=True,
            postgresql_where=text("status = 'OPEN'"),
        ),
    )


class NetPosition(Base):
    __tablename__ = "net_positions"
    window_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clearing_windows.id"), primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    net_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)


class FundingInstruction(Base):
    """What a net debtor must fund for a window: its net debit, under a reference that
    its camt.054 carries as EndToEndId so the booking finds its way to the window."""

    __tablename__ = "funding_instructions"
    id: Mapped[uuid.UUID] = _uuid_pk()
    window_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clearing_windows.id"), nullable=False)
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    reference: Mapped[str] = mapped_column(String(35), unique=True, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default=FundingStatus.PENDING.value)
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bank_notifications.id"))
    funded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created_at()
    __table_args__ = (
        UniqueConstraint("window_id", "participant_id", name="uq_funding_instructions_window_bank"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(sql_in("status", FundingStatus), name="status"),
    )


class NetDebitCap(Base):
    """The most a bank may owe, net, in one currency's open window (set by admin)."""

    __tablename__ = "net_debit_caps"
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    cap: Mapped[Decimal] = mapped_column(Money, nullable=False)
    updated_at: Mapped[datetime] = _created_at()
    __table_args__ = (CheckConstraint("cap >= 0", name="cap_not_negative"),)


class Obligation(Base):
    """What the payer bank owes the payee bank for one payment, until it settles."""

    __tablename__ = "obligations"
    id: Mapped[uuid.UUID] = _uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), nullable=False)
    # A payment in one currency has one obligation (SOURCE); a cross-currency one two.
    leg: Mapped[str] = mapped_column(String(8), nullable=False, server_default=ObligationLeg.SOURCE.value)
    # A cross-currency leg settling net: its window moves the tokens into the payee's
    # escrow account, released when the other leg has settled too (deltran/fx_settlement.py).
    escrowed: Mapped[bool] = mapped_column(nullable=False, server_default="false")
    payer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    payee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default=ObligationStatus.PENDING.value)
    settlement_mode: Mapped[str] = mapped_column(String(8), nullable=False, server_default=SettlementMode.GROSS.value)
    routing_reason: Mapped[str | None] = mapped_column(Text)
    clearing_window_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clearing_windows.id"))
    # Set when a window's fallback could not settle it and rolled it into the next one:
    # the latest such window (every roll is kept in obligation_rolls).
    rolled_from_window_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clearing_windows.id"))
    fallback_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    settled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    bank_confirmation_reference: Mapped[str | None] = mapped_column(String(140))
    camt054_entry_reference: Mapped[str | None] = mapped_column(String(140))
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(sql_in("status", ObligationStatus), name="status"),
        CheckConstraint(sql_in("settlement_mode", SettlementMode), name="settlement_mode"),
        CheckConstraint(sql_in("leg", ObligationLeg), name="leg"),
        CheckConstraint("NOT escrowed OR settlement_mode = 'NET'", name="escrowed_net"),
        CheckConstraint("payer_id <> payee_id", name="distinct_parties"),
        UniqueConstraint("payment_id", "leg", name="uq_obligations_payment_leg"),
        # A settled obligation always carries its closure: time and both references.
        CheckConstraint(
            "status NOT IN ('SETTLED', 'UNWOUND') OR (settled_at IS NOT NULL"
            " AND bank_confirmation_reference IS NOT NULL"
            " AND camt054_entry_reference IS NOT NULL)",
            name="settled_has_references",
        ),
        Index("ix_obligations_window", "clearing_window_id"),
        # What a token's foreign key refers to (Token: fk_tokens_obligation_terms).
        UniqueConstraint("id", "payment_id", "payee_id", "amount", "currency", name="uq_obligations_token_terms"),
    )


class ObligationRoll(Base):
    """One roll of a net obligation by a window's fallback: from the window that could
    not settle it into the next. An obligation rolled twice has two rows."""

    __tablename__ = "obligation_rolls"
    obligation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("obligations.id"), primary_key=True)
    from_window_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clearing_windows.id"), primary_key=True)
    to_window_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clearing_windows.id"), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    rolled_at: Mapped[datetime] = _created_at()
    __table_args__ = (Index("ix_obligation_rolls_from_window", "from_window_id"),)


class Camt054Message(Base):
    """Every camt.054 message received, verbatim, before anything is derived from it."""

    __tablename__ = "camt054_messages"
    id: Mapped[uuid.UUID] = _uuid_pk()
    message_id: Mapped[str] = mapped_column(String(35), nullable=False)
    body_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    received_at: Mapped[datetime] = _created_at()


class BankNotification(Base):
    """One camt.054 entry (one TxDtls of one Ntry) as received, matched or not. A
    repeated entry (same account, entry reference and transaction index) is recognised
    by the unique constraint and changes nothing."""

    __tablename__ = "bank_notifications"
    id: Mapped[uuid.UUID] = _uuid_pk()
    message_row_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("camt054_messages.id"), nullable=False)
    account: Mapped[str] = mapped_column(String(70), nullable=False)
    entry_reference: Mapped[str] = mapped_column(String(140), nullable=False)
    tx_index: Mapped[int] = mapped_column(Integer, nullable=False)
    end_to_end_id: Mapped[str | None] = mapped_column(String(35))
    uetr: Mapped[str | None] = mapped_column(String(36))
    bank_reference: Mapped[str | None] = mapped_column(String(140))
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    credit_debit: Mapped[str] = mapped_column(String(4), nullable=False)
    entry_status: Mapped[str] = mapped_column(String(35), nullable=False)  # Sts/Cd or Sts/Prtry (Max35Text)
    reversal: Mapped[bool] = mapped_column(nullable=False, server_default="false")
    booking_date: Mapped[date | None] = mapped_column(Date)
    outcome: Mapped[str] = mapped_column(String(24), nullable=False)
    outcome_detail: Mapped[str | None] = mapped_column(Text)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payments.id"))
    funding_instruction_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("funding_instructions.id", use_alter=True)
    )
    redemption_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("redemptions.id", use_alter=True))
    # The bank the money came from, when the settlement agent said (TxDtls/RltdAgts/DbtrAgt):
    # who gets back a credit that matched nothing (deltran/refunds.py).
    debtor_agent_bic: Mapped[str | None] = mapped_column(String(11))
    # A DBIT that paid a refund out (the refund its EndToEndId names).
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id", use_alter=True))
    # When a refund of this (CRDT) entry was instructed: out of the sweeper's indexes then.
    refunded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    signalled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = _created_at()
    __table_args__ = (
        UniqueConstraint("account", "entry_reference", "tx_index", name="uq_bank_notifications_entry"),
        CheckConstraint(sql_in("outcome", EntryOutcome), name="outcome"),
        Index("ix_bank_notifications_end_to_end_id", "end_to_end_id"),
        # At most one entry funds a payment (a cross-currency one: one per leg, each in
        # its own currency); a second booking for it is an exception.
        Index(
            "uq_bank_notifications_matched_payment",
            "payment_id",
            "currency",
            unique=True,
            postgresql_where=text("outcome = 'MATCHED'"),
        ),
        # At most one entry books a redemption's payout.
        Index(
            "uq_bank_notifications_matched_redemption",
            "redemption_id",
            unique=True,
            postgresql_where=text("outcome = 'MATCHED'"),
        ),
        # At most one entry books a refund's payout.
        Index(
            "uq_bank_notifications_matched_refund",
            "refund_id",
            unique=True,
            postgresql_where=text("outcome = 'MATCHED'"),
        ),
        # Stranded entries not yet refunded, for the sweeper's refunds (deltran/refunds.py):
        # a refunded one leaves them, so a round reads only what may still need one.
        Index(
            "ix_bank_notifications_refundable",
            "received_at",
            "id",
            postgresql_where=text("outcome IN ('PAYMENT_NOT_AWAITING', 'AMOUNT_MISMATCH') AND refunded_at IS NULL"),
        ),
        Index(
            "ix_bank_notifications_unmatched_unrefunded",
            "received_at",
            "id",
            postgresql_where=text("outcome IN ('UNMATCHED', 'AMBIGUOUS') AND refunded_at IS NULL"),
        ),
        # Likewise at most one entry funds a window's funding instruction.
        Index(
            "uq_bank_notifications_matched_funding",
            "funding_instruction_id",
            unique=True,
            postgresql_where=text("outcome = 'MATCHED'"),
        ),
        Index("ix_bank_notifications_payment", "payment_id"),
        # The sweeper's round: matched entries whose signal never went out, oldest first.
        Index(
            "ix_bank_notifications_unsignalled",
            "received_at",
            "id",
            postgresql_where=text("outcome = 'MATCHED' AND signalled_at IS NULL"),
        ),
    )


class Token(Base):
    """A minted token: the payee's credit for one settled obligation, backed 1:1 by the
    booked fiat. The unique obligation id is the final guard against a double mint."""

    __tablename__ = "tokens"
    id: Mapped[uuid.UUID] = _uuid_pk()
    obligation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True, nullable=False)
    payment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transfers.id"), nullable=False)
    minted_at: Mapped[datetime] = _created_at()
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        # A token carries exactly its obligation's terms: payment, owner (the payee),
        # amount and currency. One foreign key checks all of them (and, through the
        # obligation's own keys, that the payment and the participant exist).
        ForeignKeyConstraint(
            ["obligation_id", "payment_id", "owner_id", "amount", "currency"],
            [
                "obligations.id",
                "obligations.payment_id",
                "obligations.payee_id",
                "obligations.amount",
                "obligations.currency",
            ],
            name="fk_tokens_obligation_terms",
        ),
    )


class AuditLog(Base):
    """Append-only: who did what, when, with what result; written in the transaction of
    the change it records, sealed into a hash chain afterwards (deltran/audit.py). A
    trigger (migration 0002) refuses DELETE, TRUNCATE and any UPDATE but the sealing."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    recorded_at: Mapped[datetime] = _created_at()
    actor: Mapped[str] = mapped_column(Text, nullable=False)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    subject: Mapped[str | None] = mapped_column(Text)
    result: Mapped[str] = mapped_column(Text, nullable=False)
    details: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'"))
    # The seal: position in the chain and the link to the record sealed before it.
    seal_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(CHAR(64))
    hash: Mapped[str | None] = mapped_column(CHAR(64))
    __table_args__ = (
        CheckConstraint(
            "(seal_seq IS NULL) = (prev_hash IS NULL) AND (seal_seq IS NULL) = (hash IS NULL)",
            name="sealed_whole",
        ),
        # What the sealer looks for: stays tiny however long the log grows.
        Index("ix_audit_log_unsealed", "id", postgresql_where=text("seal_seq IS NULL")),
    )


class Cancellation(Base):
    """A debtor agent's recall of one of its payments (a camt.056, or JSON) and its answer
    (a camt.029): CNCL, the payment had not settled and is CANCELLED; PDCR, it had, and
    its creditor agent decides (an investigation, GET /v1/investigations); RJCR, refused
    by the creditor agent or too late. One per payment: a repeat gets the first's answer."""

    __tablename__ = "cancellations"
    id: Mapped[uuid.UUID] = _uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), unique=True, nullable=False)
    requested_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    # The creditor agent: who answers a PDCR.
    assignee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    # The camt.056's case assignment (Assgnmt/Id), or one DelTran gave a JSON request.
    case_id: Mapped[str] = mapped_column(String(35), nullable=False)
    reason_code: Mapped[str] = mapped_column(String(4), nullable=False)  # ISO cancellation reason
    reason: Mapped[str | None] = mapped_column(String(105))
    message_name: Mapped[str | None] = mapped_column(String(35))  # "camt.056.001.12", or None for JSON
    status: Mapped[str] = mapped_column(String(4), nullable=False)
    status_reason_code: Mapped[str | None] = mapped_column(String(4))  # why RJCR (ISO code)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The return that answered it, when the creditor agent accepted it.
    return_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payment_returns.id"))
    __table_args__ = (
        CheckConstraint(sql_in("status", CancellationStatus), name="status"),
        # A creditor agent's open investigations.
        Index("ix_cancellations_pending", "assignee_id", "created_at", postgresql_where=text("status = 'PDCR'")),
    )


class PaymentReturn(Base):
    """A settled payment sent back by its creditor agent (a pacs.004, or JSON), in whole or
    in part: its tokens moved back to the debtor agent by `transfer_id`, in the
    transaction that stored this row. Unique per creditor agent and `return_key` (the
    pacs.004's RtrId, an Idempotency-Key, or the JSON request's fingerprint), so the same
    return twice moves nothing twice; all of a payment's returns never exceed it."""

    __tablename__ = "payment_returns"
    id: Mapped[uuid.UUID] = _uuid_pk()
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), nullable=False, index=True)
    returned_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    return_key: Mapped[str] = mapped_column(String(100), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    reason_code: Mapped[str] = mapped_column(String(4), nullable=False)  # ISO return reason
    reason: Mapped[str | None] = mapped_column(String(105))
    message_id: Mapped[str | None] = mapped_column(String(35))  # the pacs.004's MsgId
    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transfers.id"), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    __table_args__ = (
        UniqueConstraint("returned_by", "return_key", name="uq_payment_returns_key"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )


class Refund(Base):
    """Fiat booked on DelTran's settlement account that can no longer settle anything (a
    camt.054 CRDT entry for a payment rejected, expired or cancelled, or one another entry
    already funded, of the wrong amount, late for its window, or a window funding's part
    its settlement did not take: `amount` ≤ the entry's), to be paid back to the bank that
    sent it: listed for the settlement agent (GET /v1/payouts, kind refund) until its DBIT
    camt.054, EndToEndId `reference`, books it. Off the token ledger: never minted."""

    __tablename__ = "refunds"
    id: Mapped[uuid.UUID] = _uuid_pk()
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bank_notifications.id"), unique=True, nullable=False)
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    reference: Mapped[str] = mapped_column(String(35), unique=True, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    # The DBIT entry that booked it.
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bank_notifications.id"))
    # Why ops or compliance hold it (status HELD), and when it was last put on the settlement
    # agent's list: its payout deadline runs from then.
    held_reason: Mapped[str | None] = mapped_column(Text)
    instructed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(sql_in("status", RefundStatus), name="status"),
        Index("ix_refunds_status", "status", "created_at"),
    )


class Redemption(Base):
    """A bank turning tokens back into fiat: reserved, paid out by the settlement agent
    (its DBIT camt.054 carries `reference` as EndToEndId), then burned — or released.
    Unique per bank and Idempotency-Key; the fingerprint tells a repeat from a conflict."""

    __tablename__ = "redemptions"
    id: Mapped[uuid.UUID] = _uuid_pk()
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(100), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    reference: Mapped[str] = mapped_column(String(35), unique=True, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    payout_iban: Mapped[str | None] = mapped_column(String(34))
    payout_account: Mapped[str | None] = mapped_column(String(34))
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    notification_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bank_notifications.id"))
    release_reason: Mapped[str | None] = mapped_column(Text)
    workflow_id: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    __table_args__ = (
        UniqueConstraint("participant_id", "idempotency_key", name="uq_redemptions_idempotency"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(sql_in("status", RedemptionStatus), name="status"),
        CheckConstraint("(payout_iban IS NOT NULL) <> (payout_account IS NOT NULL)", name="payout_account"),
        # The settlement agent's list of payouts, and the sweeper's redemptions in flight.
        Index("ix_redemptions_status", "status", "created_at"),
    )


class Event(Base):
    """Something a bank is told, written in the transaction of the change it reports
    (deltran/events.py): nothing changes untold, nothing is told that did not happen.
    `written` is the order of writing; `seq`, the bank-facing order, is given after commit
    (a transaction that commits late is numbered later, so a reader that has seen seq N
    never later finds an event below it)."""

    __tablename__ = "events"
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    written: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False)
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    created_at: Mapped[datetime] = _created_at()
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payments.id"))
    data: Mapped[dict] = mapped_column(JSONB, nullable=False)
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    # Set when numbered: PENDING for a bank with a webhook, NO_WEBHOOK for one without.
    delivery_status: Mapped[str | None] = mapped_column(String(12))
    delivery_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivery_error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint(sql_in("type", EventType), name="type"),
        CheckConstraint(sql_in("delivery_status", DeliveryStatus), name="delivery_status"),
        # What the numberer looks for: stays tiny however many events there are.
        Index("ix_events_unnumbered", "written", postgresql_where=text("seq IS NULL")),
        # A bank's feed, in order. Written in the hot transactions (intake, mints), an event
        # enters only its primary key and the unnumbered index; the rest when numbered.
        Index("ix_events_feed", "participant_id", "seq", postgresql_where=text("seq IS NOT NULL")),
        # Events still to push to a webhook: what a bank's delivery has not caught up with.
        Index(
            "ix_events_undelivered",
            "participant_id",
            "seq",
            postgresql_where=text(f"delivery_status = '{DeliveryStatus.PENDING.value}'"),
        ),
    )


class Webhook(Base):
    """A bank's one webhook endpoint. The secret signs every delivery (Standard Webhooks),
    so it is kept, not hashed; it is shown once, when set. Events numbered after
    `after_seq` (the feed's end when the endpoint was set) are delivered to it."""

    __tablename__ = "webhooks"
    participant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    secret: Mapped[str] = mapped_column(Text, nullable=False)
    after_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _created_at()


class CircuitBreaker(Base):
    """Per currency: OPEN stops minting (mints retry and wait) until an admin closes it
    after the break that opened it is resolved."""

    __tablename__ = "circuit_breakers"
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    state: Mapped[str] = mapped_column(String(8), nullable=False, server_default=BreakerState.CLOSED.value)
    reason: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (CheckConstraint(sql_in("state", BreakerState), name="state"),)


class ReconciliationRun(Base):
    """One run of the account monitor, with its result and the breaks it found."""

    __tablename__ = "reconciliation_runs"
    id: Mapped[uuid.UUID] = _uuid_pk()
    tier: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ok: Mapped[bool] = mapped_column(nullable=False)
    summary: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default=text("'{}'"))
    breaks: Mapped[list] = mapped_column(JSONB, nullable=False, server_default=text("'[]'"))
    break_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    __table_args__ = (
        CheckConstraint(sql_in("tier", ReconciliationTier), name="tier"),
        Index("ix_reconciliation_runs_tier_started", "tier", "started_at"),
    )


class FxPair(Base):
    """A currency pair the admin allows FX in, and its limits: the widest spread a rate
    sheet may post ((ask − bid) / mid) and the longest a quote lives."""

    __tablename__ = "fx_pairs"
    pair: Mapped[str] = mapped_column(String(7), primary_key=True)  # BASE/QUOTE, e.g. AED/INR
    max_spread: Mapped[Decimal] = mapped_column(Numeric(12, 8), nullable=False)
    max_quote_lifetime_s: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    __table_args__ = (
        CheckConstraint("max_spread >= 0 AND max_spread < 1", name="max_spread"),
        CheckConstraint("max_quote_lifetime_s > 0", name="max_quote_lifetime_s"),
    )


class FxRate(Base):
    """A provider's price for a pair, in QUOTE per one BASE: it buys BASE at `bid`,
    sells it at `ask`. Its sheet is replaced whole by each PUT /v1/fx/rates."""

    __tablename__ = "fx_rates"
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    pair: Mapped[str] = mapped_column(ForeignKey("fx_pairs.pair", ondelete="CASCADE"), primary_key=True)
    bid: Mapped[Decimal] = mapped_column(FxRateNumber, nullable=False)
    ask: Mapped[Decimal] = mapped_column(FxRateNumber, nullable=False)
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    posted_at: Mapped[datetime] = _created_at()
    __table_args__ = (CheckConstraint("bid > 0 AND bid <= ask", name="bid_ask"),)


class FxQuote(Base):
    """A rate locked for one cross-currency payment of a debtor agent: both amounts, the
    provider, and until when it may be used — once (`status` USED, `payment_id`)."""

    __tablename__ = "fx_quotes"
    id: Mapped[uuid.UUID] = _uuid_pk()
    debtor_agent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("participants.id"), nullable=False)
    source_currency: Mapped[str] = mapped_column(String(3), nullable=False)
    source_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    target_currency: Mapped[str] = mapped_column(String(3), nullable=False)
    target_amount: Mapped[Decimal] = mapped_column(Money, nullable=False)
    rate: Mapped[Decimal] = mapped_column(FxRateNumber, nullable=False)  # target per one source
    fixed: Mapped[str] = mapped_column(String(6), nullable=False)
    status: Mapped[str] = mapped_column(String(8), nullable=False, server_default=FxQuoteStatus.OPEN.value)
    payment_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("payments.id"), unique=True)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        CheckConstraint("source_amount > 0 AND target_amount > 0 AND rate > 0", name="positive"),
        CheckConstraint("source_currency <> target_currency", name="two_currencies"),
        CheckConstraint(sql_in("fixed", FxFixedSide), name="fixed"),
        CheckConstraint(sql_in("status", FxQuoteStatus), name="status"),
        CheckConstraint("(status = 'USED') = (payment_id IS NOT NULL)", name="used_by_a_payment"),
        Index("ix_fx_quotes_debtor_agent", "debtor_agent_id", "created_at"),
    )
