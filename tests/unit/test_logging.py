"""Structured logs (deltran/observability/logs.py) and the worker's activity log context
(worker/logging_interceptor.py): JSON lines, bound context, redaction, text mode."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from deltran.observability.logs import (
    JsonFormatter,
    TextFormatter,
    bind,
    bound,
    configure_logging,
    log_settings_from_env,
    redact,
    redact_text,
)
from deltran.shared import CloseInput, SettleInput, WindowSettlement
from worker.logging_interceptor import context_of

IBAN = "AE070331234567890123456"
PAYMENT_ID = uuid.UUID("6f1c0c4e-2d7a-4b8e-9a51-3c1f5d0e7a21")


class _Capture:
    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.logger = logging.getLogger(f"test.logging.{uuid.uuid4().hex}")
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def capture() -> Iterator[_Capture]:
    c = _Capture(JsonFormatter())
    yield c
    c.logger.removeHandler(c.handler)


@pytest.fixture
def text_capture() -> Iterator[_Capture]:
    c = _Capture(TextFormatter())
    yield c
    c.logger.removeHandler(c.handler)


def test_each_record_is_one_json_object_per_line(capture):
    capture.logger.info("payment accepted")
    capture.logger.warning("multi\nline %s", "message")
    lines = capture.lines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "payment accepted"
    assert first["level"] == "INFO"
    assert first["logger"] == capture.logger.name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["event"] == "multi\nline message" and second["level"] == "WARNING"
    assert "exc" not in first


def test_extra_fields_are_included_and_serialised(capture):
    capture.logger.info("x", extra={"payment_id": PAYMENT_ID, "amount": Decimal("100.00"), "created_new": True})
    (record,) = capture.records()
    assert record["payment_id"] == str(PAYMENT_ID)
    assert record["amount"] == "100.00"
    assert record["created_new"] is True


def test_bound_context_is_on_every_record_inside_and_gone_after(capture):
    with bind(payment_id=PAYMENT_ID, end_to_end_id="E2E-1", workflow_id="payment-EBILAEAD-E2E-1"):
        capture.logger.info("one")
        capture.logger.info("two")
    capture.logger.info("after")
    one, two, after = capture.records()
    for record in (one, two):
        assert record["payment_id"] == str(PAYMENT_ID)
        assert record["end_to_end_id"] == "E2E-1"
        assert record["workflow_id"] == "payment-EBILAEAD-E2E-1"
    assert "payment_id" not in after and "workflow_id" not in after
    assert bound() == {}


def test_nested_binds_add_and_override_then_restore(capture):
    with bind(workflow_id="clearing-AED", window_id="w-1"):
        with bind(activity="net_window", window_id="w-2", ignored=None):
            capture.logger.info("inner")
        capture.logger.info("outer")
    inner, outer = capture.records()
    assert inner["workflow_id"] == "clearing-AED"
    assert inner["activity"] == "net_window"
    assert inner["window_id"] == "w-2"
    assert "ignored" not in inner
    assert outer == outer | {"workflow_id": "clearing-AED", "window_id": "w-1"}
    assert "activity" not in outer


def test_bind_is_per_asyncio_task(capture):
    async def payment(n: int) -> None:
        bind(payment_id=f"p-{n}")  # as a plain call: bound for the rest of this task
        await asyncio.sleep(0)
        capture.logger.info("step")

    async def main() -> None:
        await asyncio.gather(*(payment(n) for n in range(5)))

    asyncio.run(main())
    assert sorted(r["payment_id"] for r in capture.records()) == [f"p-{n}" for n in range(5)]
    assert bound() == {}


def test_redact_keeps_country_code_and_last_four():
    assert redact(IBAN) == "AE07…3456"
    assert redact("AE07 0331 2345 6789 0123 456") == "AE07…3456"
    assert redact("30001234567") == "…4567"  # a domestic account number: no country code
    assert redact("1234") == "***"


def test_ibans_in_messages_are_masked(capture):
    capture.logger.info("debtor %s, printed AE07 0331 2345 6789 0123 456 USD, GB %s", IBAN, "GB82WEST12345698765432")
    (record,) = capture.records()
    assert IBAN not in record["event"] and "0331" not in record["event"]
    assert record["event"] == "debtor AE07…3456, printed AE07…3456 USD, GB GB82…5432"


def test_message_scan_spares_references_and_ids():
    text = "payment-EBILAEAD-E2E-1 WIN-AB12CDEF34567890 FUND-AB12CDEF3456-EBILAEAD AC02 " + str(PAYMENT_ID)
    assert redact_text(text) == text


def test_account_and_iban_fields_are_masked(capture):
    capture.logger.info(
        "x",
        extra={
            "debtor_iban": IBAN,
            "creditor_account": "30001234567",
            "party": {"iban": IBAN},
            "accounts": [IBAN],
            "note": f"from {IBAN}",
        },
    )
    (record,) = capture.records()
    assert record["debtor_iban"] == "AE07…3456"
    assert record["creditor_account"] == "…4567"
    assert record["party"] == {"iban": "AE07…3456"}
    assert record["accounts"] == ["AE07…3456"]
    assert record["note"] == "from AE07…3456"
    assert IBAN not in json.dumps(record)


def test_authorization_headers_and_keys_never_logged(capture):
    secret = "k3y-ZmFrZV9zZWNyZXRfdG9rZW4"
    capture.logger.info(
        "request with Authorization: Bearer %s and api_key=%s",
        secret,
        secret,
        extra={
            "headers": {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            "api_key": secret,
            "key": secret,
            "admin_key": secret,
        },
    )
    with bind(authorization=f"Bearer {secret}"):
        capture.logger.info("bound %s", f"Bearer {secret}")
    raw = "\n".join(capture.lines())
    assert secret not in raw
    first, second = capture.records()
    assert first["headers"] == {"Authorization": "***", "Content-Type": "application/json"}
    assert first["api_key"] == first["key"] == first["admin_key"] == "***"
    assert second["authorization"] == "***"
    assert second["event"] == "bound Bearer ***"


def test_exceptions_are_rendered_with_their_traceback(capture):
    try:
        raise ValueError(f"bad account {IBAN}")
    except ValueError:
        with bind(payment_id=PAYMENT_ID):
            capture.logger.exception("step failed")
    (record,) = capture.records()
    assert record["level"] == "ERROR" and record["event"] == "step failed"
    assert record["payment_id"] == str(PAYMENT_ID)
    assert record["exc"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad account AE07…3456" in record["exc"]
    assert IBAN not in record["exc"]


def test_temporal_sdk_logger_details_become_our_fields(capture):
    details = {"workflow_id": "payment-X-1", "activity_type": "mint_token", "attempt": 2, "namespace": "default"}
    capture.logger.info("from the SDK", extra={"temporal_activity": details})
    (record,) = capture.records()
    assert record["workflow_id"] == "payment-X-1"
    assert record["activity"] == "mint_token"
    assert record["attempt"] == 2
    assert "temporal_activity" not in record


def test_trace_id_of_the_current_span(capture):
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    tracer = sdk.TracerProvider().get_tracer("test")
    capture.logger.info("no span")
    with tracer.start_as_current_span("intake") as span:
        capture.logger.info("in span")
    outside, inside = capture.records()
    assert "trace_id" not in outside
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert re.fullmatch(r"[0-9a-f]{32}", inside["trace_id"])


def test_text_mode_for_a_terminal(text_capture):
    with bind(payment_id="p-1"):
        text_capture.logger.warning("camt054 entry %s", "UNMATCHED", extra={"debtor_iban": IBAN})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        text_capture.logger.exception("failed")
    out = text_capture.stream.getvalue()
    first = out.splitlines()[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\S+Z WARNING +test\.logging\.\w+: camt054 entry UNMATCHED  ", first)
    assert "payment_id=p-1" in first and "debtor_iban=AE07…3456" in first
    assert IBAN not in out
    assert "RuntimeError: boom" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


def test_configure_logging_routes_the_root_and_uvicorn_loggers():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    uvicorn_error = logging.getLogger("uvicorn.error")
    saved_uvicorn = uvicorn_error.level  # an API started earlier in the session set it
    uvicorn_error.setLevel(logging.NOTSET)
    stream = io.StringIO()
    try:
        configure_logging("DEBUG", json=True, stream=stream)
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        logging.getLogger("deltran.worker").debug("worker polling")
        logging.getLogger("httpx").info("quiet below WARNING")
        records = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(r["logger"], r["event"]) for r in records] == [
            ("uvicorn.error", "Application startup complete."),
            ("deltran.worker", "worker polling"),
        ]
        configure_logging("INFO", json=False, stream=stream)  # idempotent: one handler of ours
        ours = [h for h in root.handlers if getattr(h, "_deltran_handler", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter)
        others = {h for h in saved[0] if not getattr(h, "_deltran_handler", False)}
        assert others <= set(root.handlers)  # a test runner's capture handlers stay
    finally:
        uvicorn_error.setLevel(saved_uvicorn)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_default_handler_writes_to_the_current_stderr(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("INFO")
        capsys.readouterr()
        logging.getLogger("deltran.test").info("to stderr", extra={"payment_id": "p-1"})
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert json.loads(err)["payment_id"] == "p-1"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_log_settings_from_env():
    assert log_settings_from_env({}) == ("INFO", True)
    assert log_settings_from_env({"DELTRAN_LOG_LEVEL": "debug", "DELTRAN_LOG_FORMAT": "text"}) == ("DEBUG", False)
    with pytest.raises(ValueError):
        log_settings_from_env({"DELTRAN_LOG_FORMAT": "xml"})
    with pytest.raises(ValueError):
        log_settings_from_env({"DELTRAN_LOG_LEVEL": "loud"})


def test_activity_arguments_give_payment_and_window():
    window_id = uuid.uuid4()
    assert context_of("screen_payment", [PAYMENT_ID]) == {"payment_id": PAYMENT_ID}
    assert context_of("settle_window", [window_id]) == {"window_id": window_id}
    assert context_of("some_future_activity", [window_id]) == {}
    settle = SettleInput(
        payment_id=PAYMENT_ID,
        obligation_id=uuid.uuid4(),
        window=WindowSettlement(window_id=window_id, settlement_reference="WIN-1"),
    )
    assert context_of("settle_obligation", [settle]) == {"payment_id": PAYMENT_ID, "window_id": window_id}
    assert context_of("close_window", [CloseInput(currency="AED", closed_by="clearing-AED")]) == {"currency": "AED"}


class _Next:
    """Stands in for the rest of the interceptor chain (the activity itself)."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.seen: dict | None = None

    async def execute_activity(self, input):
        logging.getLogger("activities.test").info("inside the activity")
        self.seen = bound()
        if self.fail is not None:
            raise self.fail
        return "done"


def _run_intercepted(next_: _Next, activity_type: str, args: list) -> object:
    import dataclasses

    from temporalio.testing import ActivityEnvironment
    from temporalio.worker import ExecuteActivityInput

    from worker.logging_interceptor import LoggingInterceptor

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type=activity_type, workflow_id="payment-EBILAEAD-E2E-1")
    interceptor = LoggingInterceptor().intercept_activity(next_)  # type: ignore[arg-type]

    async def call():
        return await interceptor.execute_activity(
            ExecuteActivityInput(fn=lambda: None, args=args, executor=None, headers={})
        )

    return asyncio.run(env.run(call))


@pytest.fixture
def root_capture() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    saved = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(saved)


def _ours(stream: io.StringIO) -> list[dict]:
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [r for r in records if r["logger"] in ("activities.test", "deltran.worker.activity")]


def test_interceptor_binds_context_and_logs_completion(root_capture):
    next_ = _Next()
    assert _run_intercepted(next_, "screen_payment", [PAYMENT_ID]) == "done"
    assert next_.seen == {
        "workflow_id": "payment-EBILAEAD-E2E-1",
        "activity": "screen_payment",
        "payment_id": PAYMENT_ID,
    }
    inside, done = _ours(root_capture)
    assert inside["event"] == "inside the activity" and inside["payment_id"] == str(PAYMENT_ID)
    assert done["event"] == "activity completed" and done["level"] == "INFO"
    assert done["activity"] == "screen_payment" and done["workflow_id"] == "payment-EBILAEAD-E2E-1"
    assert isinstance(done["duration_ms"], float) and done["attempt"] == 1
    assert bound() == {}


def test_interceptor_logs_failure_with_error_type(root_capture):
    from temporalio.exceptions import ApplicationError

    refused = ApplicationError("no booked fiat", type="MintRefused", non_retryable=True)
    with pytest.raises(ApplicationError):
        _run_intercepted(_Next(fail=refused), "mint_token", [])
    _, failed = _ours(root_capture)
    assert failed["event"] == "activity failed" and failed["level"] == "WARNING"
    assert failed["error_type"] == "MintRefused" and failed["activity"] == "mint_token"
    with pytest.raises(ZeroDivisionError):
        _run_intercepted(_Next(fail=ZeroDivisionError("x")), "net_window", [])
    assert _ours(root_capture)[-1]["error_type"] == "ZeroDivisionError"
