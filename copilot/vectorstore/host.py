"""``python -m copilot.vectorstore.host``: the embedded store host process (see ``remote.py``)."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from copilot.auth import ApiKeyVerifier
from copilot.grpc_server import GrpcServer
from copilot.logs import configure_logging
from copilot.ratelimit import RateLimitSettings
from copilot.settings import ServiceSettings
from copilot.store.v1 import store_pb2_grpc
from copilot.tracing import configure_metrics, configure_tracing
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.remote import StoreServicer

log = logging.getLogger(__name__)


class StoreHostSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COPILOT_STORE_", env_nested_delimiter="__", extra="ignore")

    port: int = 50050
    path: Path = Path(".copilot/data/qdrant-edge")
    dimension: int = 384
    api_key: SecretStr = SecretStr("")
    # All of a document's chunks and vectors arrive in one ReplaceDocument.
    max_receive_message_bytes: int = 64 * 1024 * 1024
    # Its only callers are ingest and retrieval under one service key; they limit their own callers.
    rate_limit: RateLimitSettings = Field(default_factory=lambda: RateLimitSettings(requests_per_second=0))


def main() -> None:
    settings = StoreHostSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-store", settings.telemetry)
    configure_metrics("copilot-store", settings.telemetry)
    server = GrpcServer("store", settings, ApiKeyVerifier(settings.api_key))
    store = EdgeChunkStore(settings.path, settings.dimension)
    slot = server.add_service(
        store_pb2_grpc.add_StoreServiceServicer_to_server, "copilot.store.v1.StoreService"
    )
    server.start()
    slot.fill(StoreServicer(store))
    server.set_serving(True)
    server.run_until_signal(on_stop=store.close)


if __name__ == "__main__":
    main()
