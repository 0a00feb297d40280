from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings, StoreSettings


class RetrievalSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="COPILOT_RETRIEVAL_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50052
    store: StoreSettings = Field(default_factory=StoreSettings)
    default_top_k: int = 5
    max_top_k: int = 50
    max_query_chars: int = 2000
    embedding_threads: int = 1
