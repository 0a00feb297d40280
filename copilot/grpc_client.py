"""Client channels that carry trace context, request ids and the caller's bearer token, put a deadline on
every call, and retry with backoff the calls that are safe to repeat."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from copilot.grpc_server import MAX_MESSAGE_BYTES
from copilot.logs import request_id_var
from copilot.tracing import inject_metadata

# A call made without a timeout gets one of these, so no caller waits forever on a hung server.
DEFAULT_UNARY_DEADLINE_S = 30.0
# An answer streams for as long as the model writes; this bounds a stuck one.
DEFAULT_STREAM_DEADLINE_S = 300.0

MAX_RECONNECT_BACKOFF_MS = 5000

# Methods whose repetition changes nothing, retried on UNAVAILABLE (server unreachable, restarting, or a
# dependency of it down) with exponential backoff. Reads, and ingest: a document is keyed by tenant and
# uri and skipped when its content and access hashes are unchanged, so a repeat stores no second copy
# and publishes no second event (its reply then says UNCHANGED). Never retried: Answer (a second model
# run and a second interaction event), review writes, and the store host's writes, whose caller (ingest)
# is retried as a whole instead.
IDEMPOTENT_METHODS: dict[str, tuple[str, ...]] = {
    "copilot.retrieval.v1.RetrievalService": ("Search", "ExplainAccess"),
    "copilot.ingest.v1.IngestService": ("IngestDocument", "DeleteDocument"),
    "copilot.monitor.v1.MonitorService": (
        "ListFlags",
        "ListInteractions",
        "ListReviewItems",
        "GetReviewItem",
        "GetAgreement",
        "ExportAdjudicated",
    ),
    "copilot.store.v1.StoreService": ("GetDocumentHashes", "GetDocumentAccess", "Query", "CountChunks"),
    "grpc.health.v1.Health": ("Check",),
}
RETRY_POLICY = {
    # Attempts in all, within the call's one deadline; gRPC adds jitter to each backoff.
    "maxAttempts": 4,
    "initialBackoff": "0.2s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config() -> str:
    """gRPC's own retry machinery, so retries respect the deadline and stop when a server keeps failing
    (retry throttling: after about five failures in a row a channel stops retrying until calls succeed).
    Requests over gRPC's retry buffer (256 KiB) are sent once: a large ingest is retried by running the
    ingest again, which skips what was already stored."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": service, "method": m} for m in methods],
                    "retryPolicy": RETRY_POLICY,
                }
                for service, methods in IDEMPOTENT_METHODS.items()
            ],
            "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
        }
    )


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: list[tuple[str, str]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class _ContextInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, unary_deadline_s: float, stream_deadline_s: float) -> None:
        self._unary_deadline_s = unary_deadline_s
        self._stream_deadline_s = stream_deadline_s

    def _details(self, details: grpc.ClientCallDetails, default_timeout_s: float) -> _CallDetails:
        metadata = list(details.metadata or [])
        metadata.extend(inject_metadata())
        request_id = request_id_var.get()
        if request_id and not any(k == "x-request-id" for k, _ in metadata):
            metadata.append(("x-request-id", request_id))
        return _CallDetails(
            details.method,
            default_timeout_s if details.timeout is None else details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details, self._unary_deadline_s), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details, self._stream_deadline_s), request)


def open_channel(
    target: str,
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    unary_deadline_s: float = DEFAULT_UNARY_DEADLINE_S,
    stream_deadline_s: float = DEFAULT_STREAM_DEADLINE_S,
    retries: bool = True,
) -> grpc.Channel:
    """A channel whose calls carry a deadline (the caller's ``timeout=`` or the defaults here) and, with
    ``retries``, repeat the ``IDEMPOTENT_METHODS`` on UNAVAILABLE."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.enable_retries", int(retries)),
        # A server that went away is tried again at least this often, so its return is noticed in
        # seconds (gRPC's default backoff grows to two minutes).
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    if retries:
        options.append(("grpc.service_config", service_config()))
    channel = grpc.insecure_channel(target, options=options)
    return grpc.intercept_channel(channel, _ContextInterceptor(unary_deadline_s, stream_deadline_s))


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]
