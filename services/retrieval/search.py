"""Permission-aware search: the caller's identity becomes a filter inside the vector query."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from copilot.auth import Principal
from copilot.embedding import Embedder
from copilot.errors import InvalidInput
from copilot.vectorstore.port import ChunkStore, ScoredChunk

#: How many more candidates than requested the engine returns when chunks per document are capped, so
#: that a capped top-k is usually still full.
OVERFETCH = 3


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


def held_entries(principal: Principal, role_groups: Mapping[str, Sequence[str]]) -> list[str]:
    """The caller's own ACL entries plus the groups an operator mapped their realm roles to.

    A role grants only what ``role_groups`` names, so no role (an admin role included) reads past ACLs.
    """
    entries = set(principal.acl_principals())
    for role in principal.roles:
        entries.update(f"group:{group}" for group in role_groups.get(role, ()))
    return sorted(entries)


def cap_per_document(chunks: Sequence[ScoredChunk], per_document: int, limit: int) -> list[ScoredChunk]:
    """The first ``limit`` of ``chunks`` (best first) with at most ``per_document`` from any document.

    ``per_document`` 0 keeps every chunk. Skipped chunks free their slot for the next document's.
    """
    kept: list[ScoredChunk] = []
    taken: Counter[str] = Counter()
    for chunk in chunks:
        if len(kept) == limit:
            break
        document_id = str(chunk.payload["document_id"])
        if per_document and taken[document_id] >= per_document:
            continue
        taken[document_id] += 1
        kept.append(chunk)
    return kept


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
        self,
        store: ChunkStore,
        embedder: Embedder,
        default_top_k: int,
        max_top_k: int,
        max_query_chars: int,
        *,
        role_groups: Mapping[str, Sequence[str]],
        max_chunks_per_document: int,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k
        self._max_query_chars = max_query_chars
        self._role_groups = role_groups
        self._max_chunks_per_document = max_chunks_per_document

    def search(self, principal: Principal, query: str, top_k: int) -> list[Hit]:
        query = query.strip()
        if not query:
            raise InvalidInput("query is empty")
        if len(query) > self._max_query_chars:
            raise InvalidInput(f"query is {len(query)} characters; the limit is {self._max_query_chars}")
        if top_k < 0 or top_k > self._max_top_k:
            raise InvalidInput(f"top_k must be between 1 and {self._max_top_k} (0 for the default)")
        limit = top_k or self._default_top_k
        held = held_entries(principal, self._role_groups)
        # Bounded by max_top_k even when an operator sets default_top_k above it.
        fetch = min(limit, self._max_top_k) * OVERFETCH if self._max_chunks_per_document else limit
        [vector] = self._embedder.embed([query])
        chunks = self._store.query(vector, principal.tenant, held, fetch)
        return [_hit(c, held) for c in cap_per_document(chunks, self._max_chunks_per_document, limit)]
