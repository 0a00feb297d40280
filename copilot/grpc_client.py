"""Client channels that carry trace context, request ids and the caller's bearer token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from copilot.grpc_server import MAX_MESSAGE_BYTES
from copilot.logs import request_id_var
from copilot.tracing import inject_metadata


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: list[tuple[str, str]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class _ContextInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = list(details.metadata or [])
        metadata.extend(inject_metadata())
        request_id = request_id_var.get()
        if request_id and not any(k == "x-request-id" for k, _ in metadata):
            metadata.append(("x-request-id", request_id))
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)


def open_channel(target: str) -> grpc.Channel:
    channel = grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    return grpc.intercept_channel(channel, _ContextInterceptor())


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]
