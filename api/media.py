"""Content negotiation shared by the routes that speak JSON and ISO 20022 XML."""

from __future__ import annotations

XML_TYPES = ("application/xml", "text/xml")
_JSON_TYPES = ("application/json",)
_WILDCARDS = ("*/*", "application/*")


def wants_xml(accept: str) -> bool:
    """True when the client prefers XML to JSON (RFC 9110's Accept): XML's weight is
    higher, or equal and named where JSON is only matched by a wildcard. No Accept, `*/*`,
    or JSON first → JSON; `q=0` refuses a type."""
    xml, json = (0.0, 0), (0.0, 0)  # (weight, 1 if named rather than a wildcard)
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        weight = _weight(params)
        if media in XML_TYPES:
            xml = max(xml, (weight, 1))
        elif media in _JSON_TYPES:
            json = max(json, (weight, 1))
        elif media in _WILDCARDS:
            xml, json = max(xml, (weight, 0)), max(json, (weight, 0))
    return xml[0] > 0 and xml > json


def _weight(params: list[str]) -> float:
    """An Accept weight (`q`, 0 to 1 with up to three decimals: not money); a malformed
    one counts as 0, the safe reading."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value.strip())
            except ValueError:
                return 0.0
            return weight if 0.0 <= weight <= 1.0 else 0.0
    return 1.0
