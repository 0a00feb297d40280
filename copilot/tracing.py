"""OpenTelemetry set-up and W3C trace-context propagation through gRPC metadata and Kafka headers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

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
