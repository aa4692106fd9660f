"""camt.054.001.08 that DelTran writes (the reader of those the settlement agent sends is
deltran/iso20022/camt054.py): the notification of one posting to a bank's token account —
to a payment's creditor agent the credit of its tokens, to its debtor agent the debit.
The account and the entry are written as in the bank's camt.053 statement
(deltran/iso20022/token_account.py), so the notification and the statement line carry
the same references. Validated against the official XSD before it leaves.
"""

from __future__ import annotations

from lxml import etree

from deltran.domain.statements import Posting
from deltran.iso20022.token_account import ReportWriter, time_text
from deltran.iso20022.xml_safety import load_schema, schema_errors

NS = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"
SCHEMA = "camt.054.001.08.xsd"
_w = ReportWriter(NS)


class Camt054NotWritten(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def build_posting_notification(posting: Posting, *, owner_bic: str, currency: str, servicer_bic: str) -> bytes:
    """One Ntfctn with one booked Ntry, created when the posting was made. Ids and times
    are the posting's: the same notification, byte for byte, whenever it is asked for (a
    bank recognises a second copy as one)."""
    sub = _w.sub
    doc = etree.Element(f"{{{NS}}}Document", nsmap={None: NS})
    root = sub(doc, "BkToCstmrDbtCdtNtfctn")
    header = sub(root, "GrpHdr")
    message_id = "DTN" + posting.id.hex
    sub(header, "MsgId", message_id)
    sub(header, "CreDtTm", time_text(posting.booked_at))
    notification = sub(root, "Ntfctn")
    sub(notification, "Id", message_id)
    sub(notification, "CreDtTm", time_text(posting.booked_at))
    _w.account(notification, owner_bic, currency, servicer_bic)
    _w.entry(notification, posting, currency, owner_bic)
    errors = schema_errors(load_schema(SCHEMA), doc)
    if errors:
        raise Camt054NotWritten(errors)
    return etree.tostring(doc, xml_declaration=True, encoding="UTF-8", pretty_print=True)
