"""Permission-aware hybrid search: the caller's identity becomes a filter inside every engine query.

Dense (embedding) and lexical (BM25) candidates are fetched under the same filter and fused by reciprocal
rank; each passage's score stays its cosine similarity to the query, so callers can judge relevance the
same way whatever the ranking mode.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from copilot.auth import Principal
from copilot.embedding import Embedder
from copilot.errors import FailedPrecondition, InvalidInput
from copilot.lexical import encode_query
from copilot.vectorstore.port import (
    DOCUMENT_TYPES,
    NO_NARROWING,
    ChunkStore,
    Narrowing,
    ScoredChunk,
    document_type,
    searchable_text,
)

#: How many more candidates than requested each ranking fetches, so that capping chunks per document and
#: fusing two rankings still leave a full top-k.
OVERFETCH = 4
#: Fewest candidates per ranking: fusion needs some depth to reward chunks both rankings like.
MIN_CANDIDATES = 20
#: Longest passage adjacent-chunk merging builds, in chunks (about 600 tokens).
MAX_MERGED_CHUNKS = 3
#: An ACL entry as ingest writes them.
_ENTRY = re.compile(r"^(everyone|user:[^\s]+|group:[^\s]+)$")
#: The times a protobuf Timestamp may hold: 0001-01-01T00:00:00Z up to the year 10000 (which the last
#: nanosecond of 9999 rounds to as a float, so the check takes that second too).
_EARLIEST_S, _LATEST_S = -62_135_596_800, 253_402_300_800


class Mode(enum.Enum):
    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


class Reranker(Protocol):
    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance of each passage to the query, higher is better."""
        ...


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 0
    mode: Mode | None = None
    rerank: bool = False
    # 0: the server default; negative: no cap.
    max_per_document: int = 0
    narrow: Narrowing = field(default=NO_NARROWING)


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
    suspicion: tuple[str, ...] = ()
    chunk_index: int = 0
    # Index of the last chunk merged into this hit; equals chunk_index for a single chunk.
    last_chunk_index: int = 0


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


def cap_per_document(hits: Sequence[Hit], per_document: int, limit: int) -> list[Hit]:
    """The first ``limit`` of ``hits`` (best first) with at most ``per_document`` from any document.

    ``per_document`` 0 keeps every hit. Skipped hits free their slot for the next document's.
    """
    kept: list[Hit] = []
    taken: Counter[str] = Counter()
    for hit in hits:
        if len(kept) == limit:
            break
        if per_document and taken[hit.document_id] >= per_document:
            continue
        taken[hit.document_id] += 1
        kept.append(hit)
    return kept


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], weights: Sequence[float], k: float
) -> list[str]:
    """Ids ordered by the weighted sum of 1 / (k + rank) over the rankings that hold them (rank from 1).

    Ties keep the order of first appearance, so the result is deterministic.
    """
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(dict.fromkeys(i for r in rankings for i in r))}
    return sorted(fused, key=lambda item: (-fused[item], order[item]))


def cosines(query: Sequence[float], vectors: Sequence[Sequence[float]]) -> list[float]:
    """Cosine similarity of each of ``vectors`` to ``query``, in one matrix product (a Python loop over
    384 dimensions cost milliseconds a search)."""
    if not vectors:
        return []
    q, m = np.asarray(query, dtype=np.float64), np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1) * np.linalg.norm(q)
    return [float(x) for x in np.divide(m @ q, norms, out=np.zeros(len(m)), where=norms > 0)]


def merge_adjacent(hits: Sequence[Hit], max_chunks: int = MAX_MERGED_CHUNKS) -> list[Hit]:
    """Joins hits that are neighbouring chunks of one document into one passage, in the better one's place.

    Neighbours overlap (the chunker repeats a sentence or two), so the later text is appended from where
    the earlier one ends. Chunks of different sections are not contiguous text and stay apart, and no
    passage grows past ``max_chunks`` chunks.
    """
    merged: list[Hit] = []
    for hit in hits:
        for i, kept in enumerate(merged):
            joined = _join(kept, hit, max_chunks)
            if joined is not None:
                merged[i] = joined
                break
        else:
            merged.append(hit)
    # A merge can make a passage the neighbour of one kept earlier; repeat until nothing joins.
    return merged if len(merged) == len(hits) else merge_adjacent(merged, max_chunks)


def _join(a: Hit, b: Hit, max_chunks: int) -> Hit | None:
    if a.document_id != b.document_id:
        return None
    first, second = (a, b) if a.chunk_index < b.chunk_index else (b, a)
    if second.chunk_index != first.last_chunk_index + 1 or second.char_start > first.char_end:
        return None
    if second.last_chunk_index - first.chunk_index + 1 > max_chunks:
        return None
    text = first.text + second.text[max(0, first.char_end - second.char_start) :]
    return replace(
        first,
        text=text,
        score=max(a.score, b.score),
        char_end=max(first.char_end, second.char_end),
        suspicion=tuple(dict.fromkeys(first.suspicion + second.suspicion)),
        last_chunk_index=second.last_chunk_index,
        # The passage is shown where the better of the two ranked.
        chunk_id=a.chunk_id if a.score >= b.score else b.chunk_id,
    )


def _hit(chunk: ScoredChunk, held: list[str], score: float) -> Hit:
    p = chunk.payload
    index = int(p.get("chunk_index", 0))
    return Hit(
        chunk_id=chunk.point_id,
        document_id=p["document_id"],
        title=p.get("title", ""),
        uri=p.get("uri", ""),
        text=p.get("text", ""),
        score=score,
        heading_path=tuple(p.get("heading_path", ())),
        page=int(p.get("page", 0)),
        char_start=int(p.get("char_start", 0)),
        char_end=int(p.get("char_end", 0)),
        access_reason=access_reason(list(p.get("acl", [])), held),
        suspicion=tuple(str(reason) for reason in p.get("suspicion", ())),
        chunk_index=index,
        last_chunk_index=index,
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
        default_mode: Mode = Mode.HYBRID,
        dense_weight: float = 1.0,
        lexical_weight: float = 1.0,
        rrf_k: float = 10.0,
        merge_adjacent_chunks: bool = True,
        max_audience: int = 500,
        reranker: Reranker | None = None,
        rerank_candidates: int = 20,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._default_top_k = default_top_k
        self._max_top_k = max_top_k
        self._max_query_chars = max_query_chars
        self._role_groups = role_groups
        self._max_chunks_per_document = max_chunks_per_document
        self._default_mode = default_mode
        self._weights = (dense_weight, lexical_weight)
        self._rrf_k = rrf_k
        self._merge = merge_adjacent_chunks
        self._max_audience = max_audience
        self._reranker = reranker
        self._rerank_candidates = rerank_candidates
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="lexical-query")

    def search(self, principal: Principal, query: str, options: SearchOptions | None = None) -> list[Hit]:
        options = options or SearchOptions()
        query = query.strip()
        self._validate(query, options)
        limit = options.top_k or self._default_top_k
        per_document = options.max_per_document or self._max_chunks_per_document
        per_document = max(per_document, 0)
        held = held_entries(principal, self._role_groups)
        mode = options.mode or self._default_mode
        if options.rerank and self._reranker is None:
            raise FailedPrecondition("reranking was asked for, but this server has no reranker model")
        depth = max(min(limit, self._max_top_k) * OVERFETCH, MIN_CANDIDATES)
        if options.rerank:
            depth = max(depth, self._rerank_candidates)

        # The lexical query needs no embedding, so it runs while the query is embedded (the embedding is
        # most of a search's time on a CPU).
        terms = encode_query(query) if mode in (Mode.LEXICAL, Mode.HYBRID) else None
        lexical = (
            self._pool.submit(
                self._store.query,
                terms,
                principal.tenant,
                held,
                depth,
                narrow=options.narrow,
                with_vector=True,
            )
            if terms
            else None
        )
        [vector] = self._embedder.embed([query])
        rankings: list[list[ScoredChunk]] = []
        weights: list[float] = []
        if mode in (Mode.DENSE, Mode.HYBRID):
            rankings.append(self._store.query(vector, principal.tenant, held, depth, narrow=options.narrow))
            weights.append(self._weights[0])
        if terms is not None:
            rankings.append(lexical.result() if lexical is not None else [])
            weights.append(self._weights[1])

        by_id: dict[str, ScoredChunk] = {}
        for ranking in rankings:
            for chunk in ranking:
                by_id.setdefault(chunk.point_id, chunk)
        # Lexical hits come with their vectors, to be scored like the dense ones.
        scored = [c for c in by_id.values() if c.vector]
        similarity = dict(
            zip([c.point_id for c in scored], cosines(vector, [c.vector for c in scored]), strict=True)
        )
        if mode is not Mode.LEXICAL and rankings:
            # Dense hits come scored by cosine already; they win over the recomputed value.
            similarity.update({c.point_id: c.score for c in rankings[0]})
        order = reciprocal_rank_fusion([[c.point_id for c in r] for r in rankings], weights, self._rrf_k)
        hits = [_hit(by_id[i], held, similarity.get(i, 0.0)) for i in order]
        # Neighbours join before the cap per document, so a passage reads on where its best chunk stops
        # and still counts once.
        if self._merge:
            hits = merge_adjacent(hits)
        # Reranking comes before the cap: the cap keeps each document's best-fused passage, often its title
        # or synopsis line, and the cross-encoder would judge that instead of the passage that answers.
        if options.rerank and self._reranker is not None:
            n = self._rerank_candidates
            hits = self._reranked(query, hits[:n]) + hits[n:]
        hits = cap_per_document(hits, per_document, len(hits))
        return hits[:limit]

    def _reranked(self, query: str, hits: list[Hit]) -> list[Hit]:
        """The cross-encoder's order fused with the first-stage order by reciprocal rank.

        The model reads each passage under its title and headings, as ingest embedded it. Its order joins
        the fusion rather than replacing it: on the PostgreSQL manual it ranked worse alone than hybrid
        search, and better together with it.
        """
        assert self._reranker is not None
        scores = self._reranker.score(query, [searchable_text(h.title, h.heading_path, h.text) for h in hits])
        ids = [h.chunk_id for h in hits]
        by_model = [ids[i] for i in sorted(range(len(hits)), key=lambda i: -scores[i])]
        by_id = {h.chunk_id: h for h in hits}
        return [by_id[i] for i in reciprocal_rank_fusion([ids, by_model], [1.0, 1.0], self._rrf_k)]

    def _validate(self, query: str, options: SearchOptions) -> None:
        if not query:
            raise InvalidInput("query is empty")
        if len(query) > self._max_query_chars:
            raise InvalidInput(f"query is {len(query)} characters; the limit is {self._max_query_chars}")
        if options.top_k < 0 or options.top_k > self._max_top_k:
            raise InvalidInput(f"top_k must be between 1 and {self._max_top_k} (0 for the default)")
        audience = options.narrow.audience
        if len(audience) > self._max_audience:
            raise InvalidInput(f"audience has {len(audience)} members; the limit is {self._max_audience}")
        for i, member in enumerate(audience):
            if not member:
                raise InvalidInput(f"audience member {i} has no ACL entries")
            bad = [e for e in member if not _ENTRY.match(e)]
            if bad:
                raise InvalidInput(
                    f"audience member {i} has malformed entries {bad[:3]}; "
                    "expected 'everyone', 'user:NAME' or 'group:NAME'"
                )
        n = options.narrow
        unknown = [t for t in n.document_types if document_type(t) not in DOCUMENT_TYPES]
        if unknown:
            shown = ", ".join(repr(t if len(t) <= 40 else t[:40] + "...") for t in unknown[:3])
            raise InvalidInput(f"unknown document_types {shown}; expected one of {', '.join(DOCUMENT_TYPES)}")
        for name, bound in (("modified_after", n.modified_after), ("modified_before", n.modified_before)):
            if bound is not None and not _EARLIEST_S <= bound <= _LATEST_S:  # NaN fails both
                raise InvalidInput(f"{name} must be a time from the year 1 to 9999, got {bound:g} seconds")
        if (
            n.modified_after is not None
            and n.modified_before is not None
            and n.modified_after >= n.modified_before
        ):
            raise InvalidInput("modified_after must be earlier than modified_before")
