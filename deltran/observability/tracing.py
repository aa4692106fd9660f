"""OpenTelemetry traces: from the HTTP request, through the workflow start, into every
activity (Temporal's TracingInterceptor carries the context in headers). Spans are
exported by OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set,
and go nowhere otherwise; trace ids still exist, so logs carry them either way."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor

_configured = False


def setup_tracing(service_name: str) -> None:
    """Install the process's tracer provider once (API and worker each call it)."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


def temporal_interceptors() -> list:
    """Client interceptors (workers built on the client inherit them)."""
    return [TracingInterceptor()]
