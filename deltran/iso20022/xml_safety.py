"""Hardened parsing of untrusted XML bodies and validation against the bundled ISO 20022 XSDs."""

from __future__ import annotations

import codecs
import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lxml import etree

SCHEMA_DIR = Path(__file__).with_name("schemas")
MAX_REPORTED_ERRORS = 20  # enough to fix a message; a hostile body must not yield megabytes of errors

_QNAME = re.compile(r"\{[^}]*\}")
# The encoding named by an XML declaration (which must open the body, after an optional BOM).
_DECLARED_ENCODING = re.compile(rb"\A(?:\xef\xbb\xbf)?<\?xml\s[^?>]*?\bencoding\s*=\s*[\"']([^\"']*)[\"']")
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
_UTF16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# One XMLSchema object keeps a single error_log and lxml drops the GIL while validating:
# serialise validations so concurrent threads never read each other's errors.
_validate_lock = threading.Lock()


class XmlRejected(ValueError):
    """The body is not acceptable XML; `reason` is safe to show to the sender."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _encoding_problem(body: bytes) -> tuple[str, str | None] | None:
    """Why `body` is not UTF-8 (and the codec it seems to be in, if known), or None.

    ISO 20022 messages are UTF-8. Anything else is refused before parsing rather than
    transcoded: a body in another encoding is not the message the sender's systems signed
    off, and UTF-16/32 would also hide markup from byte-level checks.
    """
    if body.startswith(_UTF16_32_BOMS):
        return (
            "body is UTF-16 or UTF-32 encoded (it starts with a byte order mark); ISO 20022 messages must be UTF-8",
            "utf-16/32",
        )
    if b"\x00" in body:  # never legal in XML 1.0: UTF-16/32 without a BOM, or binary data
        return (
            "body contains NUL bytes (UTF-16 or UTF-32 encoded, or not text); ISO 20022 messages must be UTF-8",
            "utf-16/32",
        )
    match = _DECLARED_ENCODING.match(body)
    if match is not None:
        declared = match.group(1).decode("ascii", "replace")
        if declared.strip().lower() not in _UTF8_NAMES:
            return (
                f"the XML declaration names encoding {declared!r}; ISO 20022 messages must be UTF-8",
                declared,
            )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"body is not valid UTF-8 (invalid byte at offset {exc.start}); ISO 20022 messages must be UTF-8",
            None,
        )
    return None


def _hidden_doctype(body: bytes, codec: str | None) -> bool:
    """Whether a body that is not UTF-8 carries a DOCTYPE the byte scan could not see."""
    if codec == "utf-16/32":
        # ASCII markup in UTF-16/32 is the ASCII bytes interleaved with NULs.
        return b"<!DOCTYPE" in body.replace(b"\x00", b"")
    if codec:
        try:
            return "<!DOCTYPE" in body.decode(codec, "replace")
        except LookupError:  # an encoding Python does not know
            return False
    return False


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

    The size cap is applied before parsing (the web layer does not cap bodies), a body
    that is not UTF-8 (another declared encoding, UTF-16/32, invalid bytes) is refused, and
    any DOCTYPE is refused: DTDs are how XXE and entity-expansion attacks arrive, and an
    unresolved entity reference makes XMLSchema.validate() raise instead of returning False.
    """
    body = bytes(body)
    if len(body) > max_bytes:
        raise XmlRejected(f"body is {len(body)} bytes; the limit is {max_bytes}")
    if not body.strip():
        raise XmlRejected("body is empty")
    if b"<!DOCTYPE" in body:  # fast path for ASCII-compatible encodings; re-checked after parsing
        raise XmlRejected("DOCTYPE declarations are not allowed")
    problem = _encoding_problem(body)
    if problem is not None:
        reason, codec = problem
        # A hostile DOCTYPE is reported as such, whatever encoding it hides in.
        if _hidden_doctype(body, codec):
            raise XmlRejected("DOCTYPE declarations are not allowed")
        raise XmlRejected(reason)
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"malformed XML: {exc.msg or exc}") from None
    except (etree.LxmlError, ValueError) as exc:
        raise XmlRejected(f"unreadable XML: {exc}") from None
    if root is None:
        raise XmlRejected("body has no root element")
    info = root.getroottree().docinfo
    # Defence in depth: only UTF-8 gets here, where the byte scan above already sees a DOCTYPE.
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise XmlRejected("DOCTYPE declarations are not allowed")
    return root


@cache
def load_schema(name: str) -> etree.XMLSchema:
    """The XSD `name` (e.g. "camt.054.001.08.xsd", ".xsd" optional) from the schemas folder."""
    file_name = name if name.endswith(".xsd") else f"{name}.xsd"
    if Path(file_name).name != file_name:
        raise ValueError(f"schema name {name!r} must be a bare file name")
    # Parsed by file path so relative xs:import/xs:include resolve; never over the network.
    return etree.XMLSchema(etree.parse(str(SCHEMA_DIR / file_name), _parser()))


@dataclass(frozen=True)
class SchemaError:
    """One schema violation: `path` is an XPath (e.g. "/*/*/*[2]/*[3]") to the offending
    element in the validated tree, or None; `message` has namespaces stripped."""

    line: int | None
    path: str | None
    message: str


def schema_violations(schema: etree.XMLSchema, element: etree._Element) -> tuple[list[SchemaError], int]:
    """Validate `element` (as the root of its tree): the first MAX_REPORTED_ERRORS
    violations and the total count; ([], 0) when valid."""
    with _validate_lock:
        try:
            if schema.validate(element):
                return [], 0
        except etree.XMLSchemaValidateError as exc:  # defence in depth: parse_xml refuses entities
            return [SchemaError(None, None, f"schema validation could not run: {exc}")], 1
        log = list(schema.error_log)
    # Namespaces in "{urn:...}Amt" only add noise for the reader of the error.
    violations = [SchemaError(e.line, e.path or None, _QNAME.sub("", e.message)) for e in log[:MAX_REPORTED_ERRORS]]
    return violations, len(log)


def schema_errors(schema: etree.XMLSchema, element: etree._Element) -> list[str]:
    """Validate `element` (as the root of its tree); client-facing errors, empty when valid."""
    violations, total = schema_violations(schema, element)
    errors = [f"line {v.line}: {v.message}" if v.line is not None else v.message for v in violations]
    if total > len(violations):
        errors.append(f"... and {total - len(violations)} more errors")
    return errors


def find_document(root: etree._Element, namespace: str, message_type: str) -> etree._Element:
    """The one ISO 20022 Document of this message type, bare or inside an envelope
    (AppHdr + Document). Messages are recognised by namespace, never by prefix."""
    docs = list(root.iter(f"{{{namespace}}}Document"))
    if len(docs) > 1:
        raise XmlRejected(f"found {len(docs)} {message_type} Document elements; expected one")
    if not docs:
        others = sorted({etree.QName(d).namespace or "no namespace" for d in root.iter("{*}Document")})
        found = f"Document in {', '.join(others)}" if others else f"root element {root.tag}"
        raise XmlRejected(f"not a {message_type} message (expected Document in {namespace}; found {found})")
    return docs[0]
