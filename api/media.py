"""Content negotiation shared by the routes that speak JSON and ISO 20022 XML."""

from __future__ import annotations

XML_TYPES = ("application/xml", "text/xml")


def wants_xml(accept: str) -> bool:
    """True when the client asks for XML and not JSON (no Accept, */* or JSON → JSON)."""
    types = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    return any(t in XML_TYPES for t in types) and "application/json" not in types
