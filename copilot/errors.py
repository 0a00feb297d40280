"""Domain exceptions. The gRPC bootstrap maps them to status codes in one place (``STATUS_BY_ERROR``)."""

from __future__ import annotations


class CopilotError(Exception):
    """Base of every error a service reports to its caller; the message is shown to them."""


class InvalidInput(CopilotError):
    pass


class NotFound(CopilotError):
    pass


class Unauthenticated(CopilotError):
    pass


class PermissionDenied(CopilotError):
    pass


class DependencyUnavailable(CopilotError):
    """A backing system (store, broker, model engine) cannot be reached; retrying later may help."""


class ResourceExhausted(CopilotError):
    pass


class FailedPrecondition(CopilotError):
    """The request is valid but this deployment cannot serve it as configured (say, a missing model)."""
