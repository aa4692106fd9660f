"""The HTTP side of an ISO 20022 body: declared as XML (415 otherwise), and a body the
safe parser refuses (deltran/iso20022/xml_safety.py) as one problem document."""

from __future__ import annotations

from fastapi import Request

from api.media import XML_TYPES
from api.problems import Problem
from deltran.iso20022.xml_safety import XmlRejected


def require_xml(request: Request, message_name: str) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in XML_TYPES:
        raise Problem(415, f"{message_name} must be sent as application/xml", kind="unsupported-media-type")


def rejected_xml(exc: XmlRejected) -> Problem:
    return Problem(
        400, f"rejected XML: {exc.reason}", kind="invalid-xml", errors=[{"field": "body", "message": exc.reason}]
    )
