"""``make bench``: what the walking skeleton's hops cost, as ratios against baselines run in the same process.

1. Search: the full gRPC path (token check, query embedding, store host, ACL filter) against the same
   embedding + the same Qdrant engine query called in-process.
2. Answer: time to first token and total time through gRPC + retrieval + Ray Serve against the same model
   called directly through llama.cpp with the same prompt.

Writes ``docs/benchmarks.md``.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import track

from copilot.cli import _token
from copilot.common.v1 import common_pb2
from copilot.embedding import OnnxMiniLmEmbedder
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.launcher import LauncherSettings, down, up
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from copilot.vectorstore.edge import EdgeChunkStore
from services.generation.engine import ChatMessage, GenerationParams, build_engine
from services.generation.prompt import build_messages
from services.ingest.access import access_for, is_sidecar
from services.ingest.pipeline import IngestPipeline

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "sample" / "corpus"
QUERIES = [
    "What is the Q3 2026 travel budget?",
    "How many unused vacation days can I carry over?",
    "What is the hotel limit per night in London?",
    "How many days a year can I work from abroad?",
    "What are the standard vendor payment terms?",
    "How much can the on-call director approve in an emergency?",
    "What is the RTO for an orders-db failover?",
    "When is the holiday code freeze?",
]
console = Console()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _NoEvents:
    def publish(self, event: object) -> None:
        pass


def bench_search(
    stack_search: retrieval_pb2_grpc.RetrievalServiceStub, token: str, rounds: int
) -> dict[str, float]:
    embedder = OnnxMiniLmEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        store = EdgeChunkStore(Path(tmp), embedder.dimension)
        pipeline = IngestPipeline(store, embedder, _NoEvents())
        for f in sorted(p for p in CORPUS.rglob("*") if p.is_file() and not is_sidecar(p)):
            access = access_for(f, CORPUS, "acme", None)
            assert access is not None
            pipeline.ingest(str(f.resolve()), f.name, f.read_bytes(), access)
        principals = ["everyone", "group:finance", "user:alice"]
        direct, full = [], []
        for i in track(range(rounds), description="search", console=console):
            q = QUERIES[i % len(QUERIES)]
            t = time.perf_counter()
            [vector] = embedder.embed([q])
            store.query(vector, "acme", principals, 5)
            direct.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            stack_search.Search(retrieval_pb2.SearchRequest(query=q, top_k=5), metadata=bearer(token))
            full.append((time.perf_counter() - t) * 1000)
        store.close()
    return {
        "direct_p50": pct(direct, 0.5),
        "direct_p95": pct(direct, 0.95),
        "full_p50": pct(full, 0.5),
        "full_p95": pct(full, 0.95),
    }


def bench_answer(
    stub: generation_pb2_grpc.GenerationServiceStub,
    search: retrieval_pb2_grpc.RetrievalServiceStub,
    token: str,
    model: str,
    home: Path,
    questions: list[str],
) -> dict[str, float]:
    engine = build_engine("llama_cpp", model, home / "models", 2, 4096)
    full_ttft, full_total, direct_ttft, direct_total = [], [], [], []
    for q in track(questions, description="answer", console=console):
        t = time.perf_counter()
        first = None
        for response in stub.Answer(generation_pb2.AnswerRequest(question=q), metadata=bearer(token)):
            if first is None and response.delta:
                first = time.perf_counter() - t
        full_ttft.append((first or 0) * 1000)
        full_total.append((time.perf_counter() - t) * 1000)
        # Same passages, same prompt, same model: only the gRPC, retrieval and Ray Serve hops are missing.
        passages: list[common_pb2.Passage] = [
            p
            for p in search.Search(
                retrieval_pb2.SearchRequest(query=q, top_k=4), metadata=bearer(token)
            ).passages
            if p.score >= 0.45
        ]
        messages, _ = build_messages(q, passages, engine.count_tokens, 4096 - 320)
        t = time.perf_counter()
        first = None
        for delta in engine.stream_chat(
            [ChatMessage(m["role"], m["content"]) for m in messages], GenerationParams(max_tokens=256)
        ):
            if first is None and delta.text:
                first = time.perf_counter() - t
        direct_ttft.append((first or 0) * 1000)
        direct_total.append((time.perf_counter() - t) * 1000)
    return {
        "full_ttft_p50": statistics.median(full_ttft),
        "direct_ttft_p50": statistics.median(direct_ttft),
        "full_total_p50": statistics.median(full_total),
        "direct_total_p50": statistics.median(direct_total),
    }


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="copilot-bench-"))
    settings = LauncherSettings(
        home=home, base_port=51050, kafka_port=19192, issuer_port=18280, log_format="json"
    )
    started = time.perf_counter()
    stack, _ = up(settings, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
    startup_s = time.perf_counter() - started
    try:
        t = time.perf_counter()
        from copilot import cli

        os.environ["COPILOT_HOME"] = str(home)
        if cli.main(["ingest", str(CORPUS)]) != 0:
            return 1
        ingest_s = time.perf_counter() - t
        token = _token(stack, "alice", None)
        search = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(stack.endpoint("retrieval")))
        answer = generation_pb2_grpc.GenerationServiceStub(open_channel(stack.endpoint("generation")))
        s = bench_search(search, token, rounds=200)
        a = bench_answer(answer, search, token, settings.model, home, QUERIES[:4])
    finally:
        down(home, progress=lambda _m: None)
    report = f"""# Benchmarks

Command: `make bench` (`python -m bench.run`). Machine: {platform.machine()}, {os.cpu_count()} cores,
Python {platform.python_version()}. Run on {time.strftime("%Y-%m-%d")}. Numbers from one run; the ratios
compare against baselines measured in the same run, since these machines are noisy.

## Walking skeleton: cost of the hops

Stack start (`copilot up`, model load included): {startup_s:.1f} s. Ingest of the sample corpus (11 files,
through the CLI and gRPC): {ingest_s:.1f} s.

| search, top-5 with ACL filter (200 queries) | p50 ms | p95 ms |
|---|---|---|
| baseline: embed + Qdrant engine query in-process | {s["direct_p50"]:.1f} | {s["direct_p95"]:.1f} |
| full path: gRPC + token check + embed + store host | {s["full_p50"]:.1f} | {s["full_p95"]:.1f} |
| ratio full / baseline | {s["full_p50"] / s["direct_p50"]:.2f}x | {s["full_p95"] / s["direct_p95"]:.2f}x |

| answer, {settings.model} on llama.cpp, 4 questions | TTFT p50 ms | total p50 ms |
|---|---|---|
| baseline: same prompt straight into llama.cpp | {a["direct_ttft_p50"]:.0f} | {a["direct_total_p50"]:.0f} |
| full path: gRPC + retrieval + Ray Serve + Kafka spool | {a["full_ttft_p50"]:.0f} | {a["full_total_p50"]:.0f} |
| difference (full - baseline) | {a["full_ttft_p50"] - a["direct_ttft_p50"]:.0f} | {a["full_total_p50"] - a["direct_total_p50"]:.0f} |
"""
    out = REPO / "docs" / "benchmarks.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    console.print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
