"""The worker's /metrics: DelTran's own `deltran_` metrics and the Temporal SDK's worker
metrics (`temporal_…`: task slots, schedule-to-start latency, sticky cache…), on one
port, DELTRAN_WORKER_METRICS_PORT (default 9464).

The SDK exports Prometheus text from its Rust core on a port of its own; we bind that to
a private loopback port and fold its samples into our registry at each scrape."""

from __future__ import annotations

import urllib.request

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from deltran.config import Settings
from deltran.ports import free_port

SCRAPE_TIMEOUT_S = 2.0


class _SdkMetrics:
    """A prometheus_client collector that re-exposes the SDK's metrics."""

    def __init__(self, url: str) -> None:
        self._url = url

    def collect(self):
        try:
            with urllib.request.urlopen(self._url, timeout=SCRAPE_TIMEOUT_S) as response:  # noqa: S310 (loopback)
                text = response.read().decode()
        except OSError:
            return  # the SDK's exporter is not up yet: its metrics are simply absent
        yield from text_string_to_metric_families(text)


def start_worker_metrics(settings: Settings) -> Runtime:
    """Serve /metrics and return the Temporal runtime whose metrics it includes."""
    sdk_port = free_port()
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{sdk_port}")))
    REGISTRY.register(_SdkMetrics(f"http://127.0.0.1:{sdk_port}/metrics"))
    start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    return runtime
