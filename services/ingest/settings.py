from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings, StoreSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COPILOT_INGEST_", env_nested_delimiter="__", extra="ignore")

    port: int = 50051
    store: StoreSettings = Field(default_factory=StoreSettings)
    max_document_bytes: int = 50 * 1024 * 1024
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 30
    embedding_threads: int = 1
    # Role a caller needs to write documents.
    ingest_role: str = "copilot-ingest"
    # Also take ingest and delete requests from the ingest-requests topic, as one consumer group.
    consume_requests: bool = True
    requests_group: str = "copilot-ingest"
    dead_letter_topic: str = "copilot.ingest-requests.dlq.v1"
