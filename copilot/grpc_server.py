"""The gRPC bootstrap every service uses: health, reflection, auth, tracing, call metrics, error mapping,
graceful stop."""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace

from copilot import errors
from copilot.auth import Principal, reset_current_principal, set_current_principal
from copilot.logs import log_fields, request_id_var
from copilot.ratelimit import RateLimited, TokenBucketLimiter
from copilot.settings import ServiceSettings
from copilot.tracing import extract_metadata

log = logging.getLogger(__name__)


class Verifier(Protocol):
    """Turns the bearer credential of a call into its principal, or raises ``Unauthenticated``."""

    def verify(self, token: str) -> Principal: ...


# What a server may send and a client may receive; what a server accepts is a setting
# (``max_receive_message_bytes``), since that is where hostile input arrives.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Status messages travel in a header, which gRPC caps at 16 KiB; one echoing a huge input would turn
# into a confusing "Stream removed" instead.
MAX_STATUS_MESSAGE_CHARS = 2000
# Trailing metadata on a rate-limited call: milliseconds until the caller's next call is accepted.
RETRY_AFTER_METADATA = "retry-after-ms"

STATUS_BY_ERROR: dict[type[errors.CopilotError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.DependencyUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
}

# Probes and tooling must work without a token. They are not counted either: the probes' calls every few
# seconds would drown the API's in the call metrics.
OPEN_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

# From a cached lookup to a long generated answer.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000)
# Through the global meter provider, which each service's configure_metrics installs at start; until then
# (and in tests that install none) the instruments record nothing.
_meter = metrics.get_meter("copilot.grpc_server")
RPC_CALLS = _meter.create_counter(
    "copilot.rpc.server.calls",
    unit="{call}",
    description="gRPC calls handled, by service, method and status code",
)
RPC_DURATION = _meter.create_histogram(
    "copilot.rpc.server.duration",
    unit="ms",
    description="Time from a call's arrival to its status, streamed replies included",
    explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_MS,
)


def status_for(exc: errors.CopilotError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return grpc.StatusCode.INTERNAL


def _shortened(message: str) -> str:
    """Keeps both ends: the echoed input usually sits in the middle, the reason at the start or end."""
    if len(message) <= MAX_STATUS_MESSAGE_CHARS:
        return message
    keep = (MAX_STATUS_MESSAGE_CHARS - 60) // 2
    return f"{message[:keep]} ...({len(message)} characters in all)... {message[-keep:]}"


def _final_status(ctx: grpc.ServicerContext, failure: BaseException | None) -> grpc.StatusCode:
    """The status the caller gets: what the call aborted or set it with, else what gRPC makes of how the
    handler ended."""
    code = ctx.code()  # type: ignore[attr-defined]
    if isinstance(code, grpc.StatusCode):
        return code
    if failure is None:
        return grpc.StatusCode.OK
    if isinstance(failure, GeneratorExit):  # the caller stopped reading a stream
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _bearer_token(metadata: tuple[tuple[str, Any], ...]) -> str | None:
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


# Not failures of the call: a closed stream, or the process being stopped.
_NOT_CRASHES = (GeneratorExit, KeyboardInterrupt, SystemExit)


class _Undecodable:
    """Stands in for a request whose bytes are not the method's message, so the caller gets
    INVALID_ARGUMENT (after authentication) instead of the INTERNAL gRPC would answer."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, or whatever else hostile bytes provoke in the parser
            return _Undecodable(exc)

    return parse


class _CallInterceptor(grpc.ServerInterceptor):
    """Wraps each handler so tracing, auth, rate limiting and error mapping run in the worker thread that
    serves the call."""

    def __init__(
        self, service_name: str, verifier: Verifier | None, limiter: TokenBucketLimiter | None = None
    ) -> None:
        self._tracer = trace.get_tracer(service_name)
        self._verifier = verifier
        self._limiter = limiter

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        metadata = tuple(handler_call_details.invocation_metadata or ())  # type: ignore[attr-defined]
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, ctx: grpc.ServicerContext) -> Any:
                with self._scope(method, metadata, ctx, request):
                    return inner_uu(request, ctx)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, _tolerant(handler.request_deserializer), handler.response_serializer
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, ctx: grpc.ServicerContext) -> Iterator[Any]:
                with self._scope(method, metadata, ctx, request):
                    yield from inner_us(request, ctx)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, _tolerant(handler.request_deserializer), handler.response_serializer
            )
        raise NotImplementedError(f"{method}: client-streaming RPCs are not used by copilot")

    @contextmanager
    def _scope(
        self, method: str, metadata: tuple[tuple[str, Any], ...], ctx: grpc.ServicerContext, request: Any
    ) -> Iterator[None]:
        started = time.perf_counter()
        request_id = dict(metadata).get("x-request-id") or uuid.uuid4().hex
        rid_token = request_id_var.set(str(request_id))
        otel_token = otel_context.attach(extract_metadata(metadata))
        principal_token = None
        failure: BaseException | None = None
        try:
            with self._tracer.start_as_current_span(method, kind=trace.SpanKind.SERVER) as span:
                try:
                    principal = self._authenticate(metadata)
                    principal_token = set_current_principal(principal)
                    if self._limiter is not None and principal is not None:
                        self._limiter.check(principal.subject)
                    if isinstance(request, _Undecodable):
                        raise errors.InvalidInput(
                            f"the request to {method} is not a valid protobuf message: {request.error}"
                        )
                    yield
                except errors.CopilotError as exc:
                    code = status_for(exc)
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    message = _shortened(str(exc))
                    log.info("%s failed: %s", method, message, extra=log_fields(code=code.name))
                    if isinstance(exc, RateLimited):
                        retry_after_ms = str(max(1, round(exc.retry_after_s * 1000)))
                        ctx.set_trailing_metadata(((RETRY_AFTER_METADATA, retry_after_ms),))
                    ctx.abort(code, message)
                except grpc.RpcError:
                    raise
                except BaseException as exc:
                    # abort() raises an Exception subclass too; let it through untouched. A native
                    # extension's panic (pyo3's PanicException) is a BaseException: without this the call
                    # would hang until its deadline.
                    if ctx.code() is not None or isinstance(exc, _NOT_CRASHES):  # type: ignore[attr-defined]
                        raise
                    log.exception("%s crashed", method)
                    span.record_exception(exc)
                    ctx.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})")
        except BaseException as exc:
            failure = exc
            raise
        finally:
            _record_call(method, _final_status(ctx, failure), started)
            if principal_token is not None:
                reset_current_principal(principal_token)
            otel_context.detach(otel_token)
            request_id_var.reset(rid_token)

    def _authenticate(self, metadata: tuple[tuple[str, Any], ...]) -> Principal | None:
        if self._verifier is None:
            return None
        token = _bearer_token(metadata)
        if token is None:
            raise errors.Unauthenticated("missing bearer token in the 'authorization' metadata")
        return self._verifier.verify(token)


def _record_call(method: str, code: grpc.StatusCode, started: float) -> None:
    # "/copilot.retrieval.v1.RetrievalService/Search" -> service and method, as OpenTelemetry's RPC
    # conventions name them.
    service, _, name = method.lstrip("/").rpartition("/")
    attributes = {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": name,
        "rpc.grpc.status": code.name,
    }
    RPC_CALLS.add(1, attributes)
    RPC_DURATION.record((time.perf_counter() - started) * 1000, attributes)


class ServiceSlot:
    """Registered before the server starts (gRPC wants handlers then); serves once ``fill`` gives it the
    servicer, and answers UNAVAILABLE until then, while the service still loads its dependencies."""

    def __init__(self, full_name: str) -> None:
        self._full_name = full_name
        self._servicer: Any = None

    def fill(self, servicer: Any) -> None:
        self._servicer = servicer

    def __getattr__(self, method: str) -> Callable[[Any, grpc.ServicerContext], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            if self._servicer is None:
                raise errors.DependencyUnavailable(f"{self._full_name} is still starting; retry shortly")
            return getattr(self._servicer, method)(request, context)

        return call


class GrpcServer:
    """One gRPC server per service. Health stays NOT_SERVING until ``set_serving(True)``."""

    def __init__(self, name: str, settings: ServiceSettings, verifier: Verifier | None) -> None:
        self.name = name
        self._settings = settings
        limiter = TokenBucketLimiter.from_settings(settings.rate_limit)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix=name),
            interceptors=[_CallInterceptor(name, verifier, limiter)],
            options=[
                ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names: list[str] = [reflection.SERVICE_NAME, health.SERVICE_NAME]
        self.port = 0

    def add_service(self, register: Callable[[Any, grpc.Server], None], full_name: str) -> ServiceSlot:
        slot = ServiceSlot(full_name)
        register(slot, self._server)
        self._service_names.append(full_name)
        return slot

    def start(self) -> int:
        """Binds and starts answering health checks (NOT_SERVING) while the caller loads its dependencies.

        Services are added before this (gRPC takes no handlers after start), as slots filled later."""
        reflection.enable_server_reflection(self._service_names, self._server)
        self.port = self._server.add_insecure_port(f"{self._settings.host}:{self._settings.port}")
        if self.port == 0:
            raise errors.DependencyUnavailable(f"cannot bind {self._settings.host}:{self._settings.port}")
        self.set_serving(False)
        self._server.start()
        log.info("%s listening on %s:%d", self.name, self._settings.host, self.port)
        return self.port

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ["", *self._service_names]:
            self._health.set(service, status)

    def stop(self, grace_seconds: float = 10.0) -> None:
        self.set_serving(False)
        self._server.stop(grace_seconds).wait()

    def run_until_signal(
        self, on_stop: Callable[[], None] | None = None, grace_seconds: float = 10.0
    ) -> None:
        """Blocks until SIGTERM/SIGINT, then drains in-flight calls and runs ``on_stop``."""
        stop_requested = threading.Event()

        def _request_stop(signum: int, _frame: object) -> None:
            log.info("%s received %s, shutting down", self.name, signal.Signals(signum).name)
            stop_requested.set()

        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGINT, _request_stop)
        stop_requested.wait()
        self.stop(grace_seconds)
        if on_stop is not None:
            on_stop()
        log.info("%s stopped", self.name)
