"""OpenTelemetry set-up (traces, metrics) and W3C trace-context propagation through gRPC metadata and Kafka
headers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from copilot import errors
from copilot.settings import TelemetrySettings


def configure_tracing(service_name: str, settings: TelemetrySettings) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter: SpanExporter | None = None
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter()
    elif settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def configure_metrics(service_name: str, settings: TelemetrySettings) -> None:
    """Installs the process's meter provider: pushed like the traces (``exporter``) and, with
    ``prometheus_port``, served at /metrics. With neither, the instruments record nothing.

    Once per process: OpenTelemetry keeps the first meter provider and ignores later ones."""
    readers: list[MetricReader] = []
    exporter: MetricExporter | None = None
    if settings.exporter == "console":
        exporter = ConsoleMetricExporter()
    elif settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        exporter = OTLPMetricExporter(endpoint=settings.otlp_endpoint, insecure=True)
    if exporter is not None:
        readers.append(PeriodicExportingMetricReader(exporter))
    if settings.prometheus_port:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        try:
            start_http_server(settings.prometheus_port, addr=settings.prometheus_host)
        except OSError as exc:
            raise errors.DependencyUnavailable(
                f"cannot serve Prometheus metrics on {settings.prometheus_host}:{settings.prometheus_port}: "
                f"{exc}"
            ) from exc
        # Into prometheus_client's default registry, which the server above serves along with the
        # process's own CPU, memory and file descriptor figures.
        readers.append(PrometheusMetricReader())
    resource = Resource.create({"service.name": service_name})
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))


def inject_metadata() -> list[tuple[str, str]]:
    """Trace context of the current span as gRPC metadata pairs."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def extract_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> context.Context:
    carrier = {k: v for k, v in metadata if isinstance(v, str)}
    return propagate.extract(carrier)


def inject_headers() -> list[tuple[str, bytes]]:
    """Trace context of the current span as Kafka message headers."""
    return [(k, v.encode()) for k, v in inject_metadata()]


def extract_headers(headers: Sequence[tuple[str, bytes]] | None) -> context.Context:
    carrier = {k: v.decode("utf-8", "replace") for k, v in headers or ()}
    return propagate.extract(carrier)
