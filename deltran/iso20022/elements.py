"""Reading and writing the elements of one ISO 20022 message's namespace: the small
helpers every codec here needs, bound to its namespace once (`Elements(NS)`)."""

from __future__ import annotations

from lxml import etree


class Elements:
    def __init__(self, namespace: str, prefix: str) -> None:
        self.ns = namespace
        self.prefixes = {prefix: namespace}  # paths are written "<prefix>:Tag/<prefix>:Tag"

    def sub(self, parent: etree._Element, tag: str, text: str | None = None, **attrib: str) -> etree._Element:
        """A child element (ISO 20022 sequences are ordered: add children in the XSD's order)."""
        element = etree.SubElement(parent, f"{{{self.ns}}}{tag}", attrib)
        if text is not None:
            element.text = text
        return element

    def agent(self, parent: etree._Element, tag: str, bic: str | None) -> None:
        """A financial institution by its BIC: <tag><FinInstnId><BICFI>."""
        self.sub(self.sub(self.sub(parent, tag), "FinInstnId"), "BICFI", bic)

    def text(self, element: etree._Element, path: str) -> str | None:
        """The stripped text at `path` (prefixed names), or None when absent or blank."""
        found = element.find(path, self.prefixes)
        if found is None or found.text is None:
            return None
        return found.text.strip() or None
