"""Shared code every copilot service needs: settings, logging, tracing, auth, events, gRPC bootstrap.

The generated protobuf stubs live beside it under ``copilot/<domain>/v1`` (from ``make protos``).
"""
