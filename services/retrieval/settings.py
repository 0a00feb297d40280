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
    # Realm role -> ACL groups its holders read as, e.g. {"auditor": ["finance", "legal"]}. A role grants
    # only the groups listed here, so no role (an admin one included) bypasses a document's ACL.
    role_groups: dict[str, list[str]] = Field(default_factory=dict)
    # Holders of this realm role may read the full ACL of any document of their tenant and explain another
    # user's access (ExplainAccess); it reads no document content, so it grants no search results.
    auditor_role: str = "copilot-auditor"
    # Keeps one long document from filling every slot of the top-k; 0 keeps every chunk.
    max_chunks_per_document: int = Field(default=3, ge=0)
