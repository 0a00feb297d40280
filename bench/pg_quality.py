"""Retrieval quality on the PostgreSQL manual: hit@5 and MRR by page, for each ranking mode and a baseline.

Our side searches the shard ``bench.pg_ingest ours`` built, through the retrieval service's ``Searcher``
(the code behind the Search RPC) as a user who may read the manual. The baseline is a plain llama-index
pipeline over the same pages: ``SentenceSplitter(512, 50)``, the same embedding model, a vector index,
top-5 by cosine.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rich.progress import track

from bench.pg15 import TENANT, Question, hit_and_reciprocal_rank, page_of, questions
from bench.pg_ingest import console


@dataclass(frozen=True)
class Score:
    name: str
    hit_at_5: float
    mrr: float
    p50_ms: float
    misses: tuple[str, ...]


def _score(name: str, ranked: dict[str, list[str]], qs: list[Question], latencies: list[float]) -> Score:
    hits, rrs, misses = [], [], []
    for q in qs:
        hit, rr = hit_and_reciprocal_rank(ranked[q.id], q.relevant)
        hits.append(hit)
        rrs.append(rr)
        if not hit:
            misses.append(q.id)
    return Score(name, statistics.mean(hits), statistics.mean(rrs), statistics.median(latencies), tuple(misses))


def score_ours(store_dir: Path, variants: dict[str, dict[str, object]]) -> list[Score]:
    from copilot.auth import Principal
    from copilot.embedding import MiniLmEmbedder
    from copilot.reranker import OnnxCrossEncoder
    from copilot.vectorstore.edge import EdgeChunkStore
    from services.retrieval.search import Mode, Searcher, SearchOptions
    from services.retrieval.settings import RetrievalSettings

    # The retrieval service's defaults, read from the settings class (not the environment), so that a
    # variant that names no knob measures what the Search RPC does out of the box.
    default = {name: f.default for name, f in RetrievalSettings.model_fields.items()}
    embedder = MiniLmEmbedder(threads=os.cpu_count() or 1)
    store = EdgeChunkStore(store_dir, embedder.dimension)
    reranker = OnnxCrossEncoder(threads=os.cpu_count() or 1)
    reader = Principal(subject="bench", username="bench", tenant=TENANT, groups=(), roles=frozenset())
    qs = questions()
    scores = []
    try:
        for name, knobs in variants.items():
            searcher = Searcher(
                store,
                embedder,
                default["default_top_k"],
                default["max_top_k"],
                default["max_query_chars"],
                role_groups={},
                max_chunks_per_document=int(knobs.get("per_document", default["max_chunks_per_document"])),  # type: ignore[call-overload]
                default_mode=default["default_mode"],
                merge_adjacent_chunks=bool(knobs.get("merge", default["merge_adjacent_chunks"])),
                reranker=reranker,
                rerank_candidates=int(knobs.get("rerank_candidates", default["rerank_candidates"])),  # type: ignore[call-overload]
                dense_weight=float(knobs.get("dense_weight", default["dense_weight"])),  # type: ignore[arg-type]
                lexical_weight=float(knobs.get("lexical_weight", default["lexical_weight"])),  # type: ignore[arg-type]
                rrf_k=float(knobs.get("rrf_k", default["rrf_k"])),  # type: ignore[arg-type]
            )
            mode = Mode(knobs["mode"]) if "mode" in knobs else None  # None: the service default
            options = SearchOptions(top_k=5, mode=mode, rerank=bool(knobs.get("rerank", False)))
            ranked, latencies = {}, []
            for q in track(qs, description=name, console=console):
                t = time.perf_counter()
                hits = searcher.search(reader, q.text, options)
                latencies.append((time.perf_counter() - t) * 1000)
                ranked[q.id] = [page_of(h.uri) for h in hits]
            scores.append(_score(name, ranked, qs, latencies))
    finally:
        store.close()
    return scores


VARIANTS: dict[str, dict[str, object]] = {
    "dense": {"mode": "dense"},
    "sparse (BM25)": {"mode": "lexical"},
    "hybrid (default)": {},
    "hybrid + rerank": {"mode": "hybrid", "rerank": True},
}


def table(scores: list[Score]) -> str:
    rows = "\n".join(
        f"| {s.name} | {s.hit_at_5:.3f} | {s.mrr:.3f} | {s.p50_ms:.0f} |" for s in scores
    )
    return "| ranking | hit@5 | MRR | p50 ms (in-process) |\n|---|---|---|---|\n" + rows


def score_ranked(name: str, ranked: dict[str, list[str]], latency_ms: float) -> Score:
    return _score(name, ranked, questions(), [latency_ms])


if __name__ == "__main__":
    import sys

    results = score_ours(Path(sys.argv[1]), VARIANTS)
    console.print(table(results))
    for s in results:
        console.print(s.name, "misses:", " ".join(s.misses))
