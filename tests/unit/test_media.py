"""Content negotiation: which of JSON and ISO 20022 XML a client's Accept header prefers."""

from __future__ import annotations

import pytest

from api.media import wants_xml


@pytest.mark.parametrize(
    ("accept", "xml"),
    [
        ("", False),  # no preference: JSON
        ("*/*", False),
        ("application/json", False),
        ("application/xml", True),
        ("text/xml", True),
        ("Application/XML; charset=utf-8", True),
        ("application/xml, application/json", False),  # a tie between named types: JSON
        ("application/xml, */*", True),  # named beats a wildcard at the same weight
        ("application/xml;q=0.9, application/json", False),
        ("application/json;q=0, application/xml", True),  # q=0 refuses JSON
        ("application/json;q=0.5, application/xml;q=0.8", True),
        ("application/xml;q=0", False),
        ("application/xml;q=abc", False),  # a malformed weight counts as none
        ("application/xml;q=2", False),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),  # a browser
        ("text/html", False),
    ],
)
def test_the_preferred_media_type_wins(accept, xml):
    assert wants_xml(accept) is xml
