from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings, StoreSettings
from services.ingest.parsing import DEFAULT_LIMITS, ParseLimits


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COPILOT_INGEST_", env_nested_delimiter="__", extra="ignore")

    port: int = 50051
    store: StoreSettings = Field(default_factory=StoreSettings)
    max_document_bytes: int = 50 * 1024 * 1024
    # A whole document (max_document_bytes) and its envelope in one request.
    max_receive_message_bytes: int = 64 * 1024 * 1024
    # Bounds on what one file may make the parsers do (see ParseLimits); above them it is refused.
    max_unzipped_bytes: int = Field(default=DEFAULT_LIMITS.max_unzipped_bytes, gt=0)
    max_compression_ratio: float = Field(default=DEFAULT_LIMITS.max_compression_ratio, gt=1)
    max_spreadsheet_cells: int = Field(default=DEFAULT_LIMITS.max_spreadsheet_cells, gt=0)
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 30
    embedding_threads: int = 1
    # Role a caller needs to write documents.
    ingest_role: str = "copilot-ingest"
    # Also take ingest and delete requests from the ingest-requests topic, as one consumer group.
    consume_requests: bool = True
    requests_group: str = "copilot-ingest"
    # Requests read and run at a time, for different documents (each keeps about one core busy embedding).
    parallel_requests: int = Field(default=4, ge=1, le=32)
    dead_letter_topic: str = "copilot.ingest-requests.dlq.v1"
    # A delete's tombstone is kept this long, far longer than any ingest request takes: it only has to
    # outlast the writes of its document that started before the delete (ChunkStore.purge_tombstones).
    tombstone_retention_s: float = Field(default=86400, gt=0)
    # How often the old tombstones are looked for, besides once at start.
    tombstone_purge_interval_s: float = Field(default=3600, gt=0)

    def parse_limits(self) -> ParseLimits:
        return ParseLimits(self.max_unzipped_bytes, self.max_compression_ratio, self.max_spreadsheet_cells)
