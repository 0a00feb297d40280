from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings, StoreSettings
from services.retrieval.search import Mode


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
    # Passages one document may fill in the top-k; 0 keeps every chunk. Neighbouring chunks join into one
    # passage first, so 1 still reads on past a chunk boundary. On the PostgreSQL manual, 1 found an
    # answering page in the top 5 for 90% of questions against 81% with 3 (docs/benchmarks.md).
    max_chunks_per_document: int = Field(default=1, ge=0)
    # Ranking when the request does not say: dense, lexical (BM25) or hybrid (both, fused by reciprocal rank).
    default_mode: Mode = Mode.HYBRID
    # Reciprocal rank fusion: each ranking adds weight / (rrf_k + rank). Rankings here are short (20
    # candidates), and with the usual 60 (set for fusing 1,000-deep runs) 1/(k + rank) is nearly flat over
    # them, so fusion barely used rank; on the PostgreSQL manual 10 found an answering page in the top 5
    # for 2 more of 120 questions and lost none (docs/benchmarks.md).
    dense_weight: float = Field(default=1.0, ge=0)
    lexical_weight: float = Field(default=1.0, ge=0)
    rrf_k: float = Field(default=10.0, gt=0)
    # Neighbouring chunks of one document in the results are joined into one passage.
    merge_adjacent_chunks: bool = True
    # Most audience members (say, a shared channel's) one search may be narrowed to.
    max_audience: int = Field(default=500, ge=0)
    # The cross-encoder that reorders candidates when a request asks for reranking; "none" refuses such
    # requests. It costs about 80 ms per candidate per core, hence few candidates.
    reranker: Literal["cross-encoder", "none"] = "cross-encoder"
    rerank_candidates: int = Field(default=12, ge=1, le=100)
    rerank_threads: int = Field(default=1, ge=1)
