"""What DelTran's reports on a bank's token account have in common, whether a statement
(camt.053: deltran/iso20022/camt053.py) or the notification of one posting (camt.054:
deltran/iso20022/camt054_posting.py): the account (CashAccount39) and one booked entry
per posting (ReportEntry10). Both schemas define these types alike; each message writes
them in its own namespace, so one writer serves both and a bank reads the same entry —
same references, same codes — in its statement as in its notification.
"""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from deltran.domain.statements import Posting
from deltran.money import format_amount
from deltran.vocabulary import TransferKind


def account_id(bic: str, currency: str) -> str:
    """DelTran's identifier of a bank's token account (no IBAN: it is not a bank account)."""
    return f"DELTRAN/{bic}/{currency}/TOKEN"


_PAYMENT_KINDS = (TransferKind.OBLIGATION, TransferKind.RETURNED, TransferKind.ESCROW_RELEASED)
_DESCRIPTION = {
    (TransferKind.FIAT_BOOKED, True): "tokens minted against fiat booked for this bank",
    (TransferKind.OBLIGATION, True): "obligation settled to this bank",
    (TransferKind.OBLIGATION, False): "obligation settled by this bank",
    (TransferKind.RESERVED, False): "tokens reserved for a payout (EndToEndId: its reference)",
    (TransferKind.RELEASED, True): "tokens back: the payout was refused or not booked by its deadline",
    (TransferKind.RETURNED, True): "a payment this bank sent, returned to it (TxId: its obligation)",
    (TransferKind.RETURNED, False): "a payment this bank received, returned by it (TxId: its obligation)",
    (TransferKind.ESCROW_RELEASED, True): "cross-currency leg paid to this bank: the payment's other leg settled too",
    (TransferKind.ESCROW_UNWOUND, True): "cross-currency leg back to this bank: the payment's other leg never settled",
}


class ReportWriter:
    """Elements of one message's namespace (ISO 20022 sequences are ordered: each method
    writes its children in the XSD's order)."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def el(self, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
        el = etree.Element(f"{{{self.ns}}}{tag}", attrib)
        if text is not None:
            el.text = text
        return el

    def sub(self, parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
        el = self.el(tag, text, **attrib)
        parent.append(el)
        return el

    def account(self, parent: etree._Element, owner_bic: str, ccy: str, servicer_bic: str) -> None:
        """Acct: DelTran's identifier of the account, its currency, owner and servicer."""
        account = self.sub(parent, "Acct")
        self.sub(self.sub(self.sub(account, "Id"), "Othr"), "Id", account_id(owner_bic, ccy))
        self.sub(account, "Ccy", ccy)
        self.sub(self.sub(self.sub(self.sub(account, "Ownr"), "Id"), "OrgId"), "AnyBIC", owner_bic)
        self.sub(self.sub(self.sub(account, "Svcr"), "FinInstnId"), "BICFI", servicer_bic)

    def entry(self, parent: etree._Element, p: Posting, ccy: str, owner_bic: str) -> None:
        """One booked Ntry: for an obligation the payment's EndToEndId and UETR, the
        obligation as TxId, the other bank as debtor or creditor agent, bank transaction
        code PMNT/RCDT|ICDT/XBCT; for minted fiat the camt.054 entry that booked it and the
        proprietary code FIAT_BOOKED. Its own references are the posting's id."""
        direction = "CRDT" if p.credit else "DBIT"
        ntry = self.sub(parent, "Ntry")
        self.sub(ntry, "NtryRef", p.id.hex)  # references are at most 35 characters: a UUID's 32 hex digits
        self.sub(ntry, "Amt", amount_text(p.amount, ccy), Ccy=ccy)
        self.sub(ntry, "CdtDbtInd", direction)
        self.sub(self.sub(ntry, "Sts"), "Cd", "BOOK")
        self.sub(self.sub(ntry, "BookgDt"), "DtTm", time_text(p.booked_at))
        self.sub(self.sub(ntry, "ValDt"), "DtTm", time_text(p.booked_at))
        self.sub(ntry, "AcctSvcrRef", p.id.hex)
        codes = self.sub(ntry, "BkTxCd")
        if p.kind in _PAYMENT_KINDS:
            # payments / received or issued credit transfer / cross-border, or its return
            # (a cross-currency leg's escrow paid out is the payee's credit transfer)
            domain = self.sub(codes, "Domn")
            self.sub(domain, "Cd", "PMNT")
            family = self.sub(domain, "Fmly")
            self.sub(family, "Cd", "RCDT" if p.credit else "ICDT")
            self.sub(family, "SubFmlyCd", "RRTN" if p.kind is TransferKind.RETURNED else "XBCT")
        else:  # no ISO code says "tokens issued against fiat booked": DelTran's own
            proprietary = self.sub(codes, "Prtry")
            self.sub(proprietary, "Cd", p.kind.value.upper())
            self.sub(proprietary, "Issr", "DELTRAN")
        tx = self.sub(self.sub(ntry, "NtryDtls"), "TxDtls")
        refs = self.sub(tx, "Refs")
        if p.end_to_end_id:
            self.sub(refs, "EndToEndId", p.end_to_end_id)
        if p.uetr:
            self.sub(refs, "UETR", str(p.uetr))
        # A return's own id tells two partial returns of one payment apart.
        self.sub(refs, "TxId", (p.id if p.kind is TransferKind.RETURNED else (p.obligation_id or p.id)).hex)
        # Minted fiat: the settlement agent's camt.054 entry (its AcctSvcrRef, or DelTran's
        # id of it when longer than a reference may be) and the booking bank's reference.
        if p.entry_reference and len(p.entry_reference) <= 35:
            self._proprietary(refs, "CAMT054ENTRY", p.entry_reference)
        elif p.notification_id:
            self._proprietary(refs, "DELTRANCAMT054ENTRY", p.notification_id.hex)
        if p.bank_reference and len(p.bank_reference) <= 35:
            self._proprietary(refs, "BANKREF", p.bank_reference)
        self.sub(tx, "Amt", amount_text(p.amount, ccy), Ccy=ccy)
        self.sub(tx, "CdtDbtInd", direction)
        if p.counterparty_bic:
            agents = self.sub(tx, "RltdAgts")
            debtor, creditor = (p.counterparty_bic, owner_bic) if p.credit else (owner_bic, p.counterparty_bic)
            self.sub(self.sub(self.sub(agents, "DbtrAgt"), "FinInstnId"), "BICFI", debtor)
            self.sub(self.sub(self.sub(agents, "CdtrAgt"), "FinInstnId"), "BICFI", creditor)
        self.sub(ntry, "AddtlNtryInf", _DESCRIPTION.get((p.kind, p.credit), f"{p.kind.value} posting"))

    def _proprietary(self, refs: etree._Element, kind: str, reference: str) -> None:
        self.sub(refs, "Prtry").extend([self.el("Tp", kind), self.el("Ref", reference)])


def amount_text(amount, ccy: str) -> str:
    return format_amount(amount, ccy)


def time_text(at: datetime) -> str:
    return at.isoformat()
