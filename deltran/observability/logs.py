"""Structured logs for every DelTran process: one JSON object per line.

    {"ts": "2025-01-31T09:12:03.123Z", "level": "INFO", "logger": "deltran.api.intake",
     "event": "payment accepted", "payment_id": "…", "end_to_end_id": "…",
     "workflow_id": "payment-EBILAEAD-…", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}

Context travels in a `contextvars` variable: inside `with bind(payment_id=…):` every
record carries the bound fields (nested binds add to them), so one payment can be
followed through the API's and the worker's logs with one grep (`payment_id`,
`end_to_end_id` or `workflow_id`), and through its trace (`trace_id`, the current
OpenTelemetry span's, when one is active).

Nothing secret and no full account number reaches a log line: fields named like an
account or IBAN are masked to the country code and the last four characters
(`AE07…3456`), fields named like a key, secret or Authorization header are replaced
by `***`, and IBAN-shaped tokens and `Bearer …` credentials inside messages and
tracebacks are masked too.

Only the standard library (the OpenTelemetry API is used when it is installed).
`DELTRAN_LOG_FORMAT=text` gives a plain, human-readable line instead of JSON.
"""

from __future__ import annotations

import contextvars
import json as _json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from opentelemetry import trace as _otel_trace

__all__ = [
    "bind",
    "bound",
    "configure_logging",
    "JsonFormatter",
    "TextFormatter",
    "log_settings_from_env",
    "redact",
    "redact_field",
    "redact_text",
]

# -- context ------------------------------------------------------------------------------

_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "deltran_log_context", default=MappingProxyType({})
)


class bind:  # noqa: N801 - used like a function: `bind(...)` or `with bind(...):`
    """Attach fields (payment_id, end_to_end_id, workflow_id, window_id, activity, …)
    to every record logged in the current context.

    As a context manager the fields are dropped again on exit; called alone they stay
    bound until the current context (asyncio task, thread) ends. Fields set to None are
    left out; an inner bind overrides an outer one's field of the same name.
    """

    def __init__(self, **fields: Any) -> None:
        current = _CONTEXT.get()
        merged = dict(current)
        for name, value in fields.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        self._previous = current
        self._token = _CONTEXT.set(merged)

    def __enter__(self) -> bind:
        return self

    def __exit__(self, *_: object) -> None:
        try:
            _CONTEXT.reset(self._token)
        except ValueError:  # left in another context (e.g. across tasks): restore by value
            _CONTEXT.set(self._previous)


def bound() -> dict[str, Any]:
    """The fields bound in the current context."""
    return dict(_CONTEXT.get())


def _trace_fields() -> dict[str, str]:
    try:
        context = _otel_trace.get_current_span().get_span_context()
    except Exception:  # noqa: BLE001 - logging must never fail on tracing
        return {}
    if not context or not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


# -- redaction ----------------------------------------------------------------------------

_MASK = "***"
# IBAN-shaped: country code, two check digits, 11–30 letters or digits, compact or printed
# in groups of four. Upper case only, so lower-case hex (UUIDs, hashes) is left alone. A
# candidate is masked when its country uses IBANs of exactly that length (the registry's
# lengths below), which spares our own references (e.g. `WIN-` + 16 hex) almost always;
# the check digits are not verified, so a mistyped IBAN is masked too.
_IBAN_TOKEN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,8}(?: [A-Z0-9]{1,3})?)\b")
_IBAN_LENGTHS = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AO": 25,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BF": 28,
    "BG": 22,
    "BH": 22,
    "BI": 27,
    "BJ": 28,
    "BR": 29,
    "BY": 28,
    "CF": 27,
    "CG": 27,
    "CH": 21,
    "CI": 28,
    "CM": 27,
    "CR": 22,
    "CV": 25,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DJ": 27,
    "DK": 18,
    "DO": 28,
    "DZ": 26,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FK": 18,
    "FO": 18,
    "FR": 27,
    "GA": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GQ": 27,
    "GR": 27,
    "GT": 28,
    "GW": 25,
    "HN": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IR": 26,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KM": 27,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "LY": 25,
    "MA": 28,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MG": 27,
    "MK": 19,
    "ML": 28,
    "MN": 20,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "MZ": 25,
    "NE": 28,
    "NI": 28,
    "NL": 18,
    "NO": 15,
    "OM": 23,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "RU": 33,
    "SA": 24,
    "SC": 31,
    "SD": 18,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "SN": 28,
    "SO": 23,
    "ST": 25,
    "SV": 28,
    "TD": 27,
    "TG": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
    "YE": 30,
}
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b(authorization|api[_-]?key|password|secret)(['\"]?\s*[=:]\s*['\"]?)(?:(?:bearer|basic)\s+)?[^\s,;'\"}]+"
)

_ACCOUNT_NAMES = ("iban", "account")
_SECRET_NAMES = ("authorization", "api_key", "apikey", "api-key", "secret", "password", "credential", "bearer")


def redact(value: Any) -> str:
    """An account number or IBAN as it may be logged: the country code (and check
    digits) of an IBAN and the last four characters, e.g. `AE07…3456`; `…4567` for a
    domestic account number; `***` when it is too short to keep anything."""
    text = re.sub(r"\s+", "", str(value))
    if len(text) <= 8:
        return _MASK
    head = text[:4] if re.match(r"[A-Za-z]{2}[0-9]{2}", text) else ""
    return f"{head}…{text[-4:]}"


def _mask_iban_match(match: re.Match[str]) -> str:
    token = match.group(0)
    length = _IBAN_LENGTHS.get(token[:2])
    if length is None:
        return token
    if " " not in token:
        return redact(token) if len(token) == length else token
    # Printed in groups: the IBAN is its first `length` characters; a group of another
    # word that happened to follow is kept as it was.
    seen = 0
    for end, char in enumerate(token, start=1):
        seen += char != " "
        if seen == length:
            return redact(token[:end]) + token[end:]
    return token


def redact_text(text: str) -> str:
    """Mask IBAN-shaped tokens and credentials (`Bearer …`, `api_key=…`) in free text."""
    text = _IBAN_TOKEN.sub(_mask_iban_match, text)
    text = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}{m.group(2)}{_MASK}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {_MASK}", text)


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _SECRET_NAMES) or lowered == "key" or lowered.endswith(("_key", "-key"))


def _is_account_name(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in _ACCOUNT_NAMES)


def redact_field(name: str, value: Any) -> Any:
    """A field's value as it may be logged, judged by its name (recursively for
    mappings and lists): secrets become `***`, account numbers are masked, other
    strings are scanned for IBANs and credentials."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if _is_secret_name(name):
        return _MASK
    if isinstance(value, Mapping):
        return {str(k): redact_field(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_field(name, v) for v in value]
    if _is_account_name(name) and isinstance(value, str):
        return redact(value)
    if isinstance(value, str):
        return redact_text(value)
    return value


# -- formatters ---------------------------------------------------------------------------

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_CORE = ("ts", "level", "logger", "event")


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """Context, trace and `extra=` fields of a record, redacted."""
    fields: dict[str, Any] = dict(_CONTEXT.get())
    fields.update(_trace_fields())
    for name, value in vars(record).items():
        if name in _RECORD_ATTRS or name.startswith("_") or name in _CORE:
            continue
        if name in ("temporal_activity", "temporal_workflow") and isinstance(value, Mapping):
            # The Temporal SDK's loggers: keep what identifies the run, in our names.
            fields.setdefault("workflow_id", value.get("workflow_id"))
            if value.get("activity_type"):
                fields.setdefault("activity", value["activity_type"])
            if value.get("attempt") is not None:
                fields.setdefault("attempt", value["attempt"])
            continue
        fields[name] = value
    return {name: redact_field(name, value) for name, value in fields.items() if value is not None}


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    parts = []
    if record.exc_info:
        parts.append(formatter.formatException(record.exc_info))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(formatter.formatStack(record.stack_info))
    return redact_text("\n".join(parts)) if parts else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, the context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": redact_text(record.getMessage()),
        }
        line.update(_fields(record))
        exc = _exception_text(self, record)
        if exc is not None:
            line["exc"] = exc
        return _json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """For a human at a terminal: `ts LEVEL logger: event key=value …` (same redaction)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {redact_text(record.getMessage())}"
        if fields:
            line += f"  {fields}"
        exc = _exception_text(self, record)
        if exc is not None:
            line += "\n" + exc
        return line


# -- set-up -------------------------------------------------------------------------------

# Loggers that log too much at INFO for production, and the servers' own loggers, which
# must go through our handler (uvicorn runs with log_config=None).
_QUIET = ("alembic.runtime.plugins", "httpx", "httpcore")
_THROUGH_ROOT = ("uvicorn", "uvicorn.error", "uvicorn.access", "temporalio")
_OURS = "_deltran_handler"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of the record (as the stdlib's
    last-resort handler does), so a replaced or closed stderr never breaks logging."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(level: str | int = "INFO", json: bool = True, *, stream: Any = None) -> logging.Handler:
    """Send every log record of the process, as JSON lines (or text), to `stream`
    (stderr by default). Idempotent: replaces the handler a previous call (or
    `logging.basicConfig`) installed on the root logger; other handlers (a test
    runner's capture, a file handler) stay."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in _THROUGH_ROOT:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.propagate = True
        logger.disabled = False
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


def log_settings_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(level, json) from DELTRAN_LOG_LEVEL (default INFO) and DELTRAN_LOG_FORMAT
    (json | text, default json)."""
    env = os.environ if environ is None else environ
    level = env.get("DELTRAN_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"DELTRAN_LOG_LEVEL: unknown level {level!r}")
    fmt = env.get("DELTRAN_LOG_FORMAT", "json").strip().lower() or "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"DELTRAN_LOG_FORMAT must be json or text, not {fmt!r}")
    return level, fmt == "json"
