"""One trace from the HTTP request through the workflow start into every activity."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.payments import auth, payment_body, wait_for_status


async def test_a_payment_is_one_trace_from_request_to_activities(http, credentials, e2e_id):
    exporter = InMemorySpanExporter()
    trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
    bank = auth(credentials["banks"]["EBILAEAD"])
    accepted = await http.post("/v1/payments", json=payment_body(e2e_id), headers=bank)
    await wait_for_status(http, accepted.json()["payment_id"], bank, {"AWAITING_SETTLEMENT"})
    spans = exporter.get_finished_spans()
    start = next(s for s in spans if s.name == "StartWorkflow:PaymentWorkflow")
    request = next(s for s in spans if s.name.startswith("POST /v1/payments") and s.parent is None)
    in_trace = {s.name for s in spans if s.context.trace_id == request.context.trace_id}
    assert start.context.trace_id == request.context.trace_id
    assert {"RunActivity:screen_payment", "RunActivity:create_obligation"} <= in_trace
    exporter.shutdown()
