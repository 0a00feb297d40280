"""Permission-aware search: the caller's identity becomes a filter inside the vector query."""

from __future__ import annotations

from dataclasses import dataclass

from copilot.auth import Principal
from copilot.embedding import Embedder
from copilot.errors import InvalidInput
from copilot.vectorstore.port import ChunkStore, ScoredChunk


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    document_id: str
    title: str
    uri: str
    text: str
    score: float
    heading_path: tuple[str, ...]
    page: int
    char_start: int
    char_end: int
    access_reason: str


def access_reason(acl: list[str], held: list[str]) -> str:
    """The ACL entry that granted access, most specific first, so auditors see why a passage was shown."""
    granted = set(acl) & set(held)
    for prefix in ("user:", "group:", "everyone"):
        matches = sorted(e for e in granted if e.startswith(prefix))
        if matches:
            return matches[0]
    return ""


def _hit(chunk: ScoredChunk, held: list[str]) -> Hit:
    p = chunk.payload
    return Hit(
        chunk_id=chunk.point_id,
        document_id=p["document_id"],
        title=p.get("title", ""),
        uri=p.get("uri", ""),
        text=p.get("text", ""),
        score=chunk.score,
        heading_path=tuple(p.get("heading_path", ())),
        page=int(p.get("page", 0)),
        char_start=int(p.get("char_start", 0)),
        char_end=int(p.get("char_end", 0)),
        access_reason=access_reason(list(p.get("acl", [])), held),
    )


class Searcher:
    def __init__(
        self, store: ChunkStore, embedder: Embedder, default_top_k: int, max_top_k: int, max_query_chars: int
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k
        self._max_query_chars = max_query_chars

    def search(self, principal: Principal, query: str, top_k: int) -> list[Hit]:
        query = query.strip()
        if not query:
            raise InvalidInput("query is empty")
        if len(query) > self._max_query_chars:
            raise InvalidInput(f"query is {len(query)} characters; the limit is {self._max_query_chars}")
        if top_k < 0 or top_k > self._max_top_k:
            raise InvalidInput(f"top_k must be between 1 and {self._max_top_k} (0 for the default)")
        limit = top_k or self._default_top_k
        held = principal.acl_principals()
        [vector] = self._embedder.embed([query])
        chunks = self._store.query(vector, principal.tenant, held, limit)
        return [_hit(c, held) for c in chunks]
