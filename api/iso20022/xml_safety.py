"""Hardened parsing of untrusted XML bodies and validation against the bundled ISO 20022 XSDs."""
from __future__ import annotations

import re
import threading
from functools import lru_cache
from pathlib import Path

from lxml import etree

SCHEMA_DIR = Path(__file__).with_name("schemas")
MAX_REPORTED_ERRORS = 20  # enough to fix a message; a hostile body must not yield megabytes of errors

_QNAME = re.compile(r"\{[^}]*\}")
# One XMLSchema object keeps a single error_log and lxml drops the GIL while validating:
# serialise validations so concurrent threads never read each other's errors.
_validate_lock = threading.Lock()


class XmlRejected(ValueError):
    """The body is not acceptable XML; `reason` is safe to show to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _parser() -> etree.XMLParser:
    # A fresh parser per call (lxml parsers must not be shared between threads). Nothing is
    # fetched or expanded: no DTD, no entities, no network, no multi-gigabyte trees.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(body: bytes, max_bytes: int) -> etree._Element:
    """Parse an untrusted body into its root element, or raise XmlRejected.

    The size cap is applied before parsing (the web layer does not cap bodies) and any
    DOCTYPE is refused: DTDs are how XXE and entity-expansion attacks arrive, and an
    unresolved entity reference makes XMLSchema.validate() raise instead of returning False.
    """
    body = bytes(body)
    if len(body) > max_bytes:
        raise XmlRejected(f"body is {len(body)} bytes; the limit is {max_bytes}")
    if not body.strip():
        raise XmlRejected("body is empty")
    if b"<!DOCTYPE" in body:  # fast path for ASCII-compatible encodings; re-checked after parsing
        raise XmlRejected("DOCTYPE declarations are not allowed")
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"malformed XML: {exc.msg or exc}") from None
    except (etree.LxmlError, ValueError) as exc:
        raise XmlRejected(f"unreadable XML: {exc}") from None
    if root is None:
        raise XmlRejected("body has no root element")
    info = root.getroottree().docinfo
    # Catches a DOCTYPE hidden by an encoding the byte scan cannot see (UTF-16, UTF-32...).
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise XmlRejected("DOCTYPE declarations are not allowed")
    return root


@lru_cache(maxsize=None)
def load_schema(name: str) -> etree.XMLSchema:
    """The XSD `name` (e.g. "camt.054.001.08.xsd", ".xsd" optional) from the schemas folder."""
    file_name = name if name.endswith(".xsd") else f"{name}.xsd"
    if Path(file_name).name != file_name:
        raise ValueError(f"schema name {name!r} must be a bare file name")
    # Parsed by file path so relative xs:import/xs:include resolve; never over the network.
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / file_name), _parser()))


def schema_errors(schema: etree.XMLSchema, element: etree._Element) -> list[str]:
    """Validate `element` (as the root of its tree); client-facing errors, empty when valid."""
    with _validate_lock:
        try:
            if schema.validate(element):
                return []
        except etree.XMLSchemaValidateError as exc:  # defence in depth: parse_xml refuses entities
            return [f"schema validation could not run: {exc}"]
        log = list(schema.error_log)
    # Namespaces in "{urn:...}Amt" only add noise for the reader of the error.
    errors = [f"line {e.line}: {_QNAME.sub('', e.message)}" for e in log[:MAX_REPORTED_ERRORS]]
    if len(log) > MAX_REPORTED_ERRORS:
        errors.append(f"... and {len(log) - MAX_REPORTED_ERRORS} more errors")
    return errors
