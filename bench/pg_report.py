"""Ingestion speed (issue 3) and retrieval quality (issue 4) on the PostgreSQL 15 manual, against llama-index.

Both ingest sides run as child processes (``bench.pg_ingest``), one at a time, so each has the machine and
its own peak memory, and they alternate (ours, baseline, baseline, ours): the machine's load drifts over
minutes, and two sequential runs gave ratios from 0.58x to 0.92x for the same code. Our first store is then
searched in every ranking mode for the question set, and the baseline's own retriever answers the same
questions inside its process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from bench.pg15 import REPO
from bench.pg_quality import VARIANTS, score_ours, score_ranked, table

#: Pages to ingest; 0 is the whole manual. ``COPILOT_BENCH_PG_PAGES`` lowers it for a quick look.
PAGES = int(os.environ.get("COPILOT_BENCH_PG_PAGES", "0"))
#: Runs of each side, alternating; ``COPILOT_BENCH_PG_ROUNDS=1`` halves the time for a quick look.
ROUNDS = int(os.environ.get("COPILOT_BENCH_PG_ROUNDS", "2"))


def run_child(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.pg_ingest", *args],
        cwd=REPO,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def numbers(result: dict[str, object]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if isinstance(v, int | float)}


def non_embedding_share(ours: dict[str, float]) -> float:
    """Parse, chunk, BM25 and upsert as a share of our ingest's CPU time (documents run side by side, so
    waits would otherwise count as whatever was waiting)."""
    return (ours["cpu_s"] - ours["embed_cpu_s"]) / ours["cpu_s"]


def run(console: Console) -> str:
    order = [("ours", "baseline"), ("baseline", "ours")] * ROUNDS
    sides = [side for pair in order[:ROUNDS] for side in pair]
    runs: dict[str, list[dict[str, object]]] = {"ours": [], "baseline": []}
    with tempfile.TemporaryDirectory(prefix="copilot-pg-") as tmp:
        for i, side in enumerate(sides, 1):
            console.print(f"run {i} of {len(sides)}: ingesting with {side} ...")
            store = ["--store", str(Path(tmp) / f"shard-{i}")] if side == "ours" else []
            runs[side].append(run_child(side, "--pages", str(PAGES), *store))
        first_store = Path(tmp) / f"shard-{sides.index('ours') + 1}"
        scores = score_ours(first_store, VARIANTS)
    ranked = runs["baseline"][0]["ranked"]
    assert isinstance(ranked, dict)
    figures = {side: [numbers(r) for r in side_runs] for side, side_runs in runs.items()}
    walls = {side: " / ".join(f"{r['wall_s']:.0f}" for r in side_runs) for side, side_runs in figures.items()}
    o, b = figures["ours"][0], figures["baseline"][0]
    scores.append(
        score_ranked("llama-index baseline (SentenceSplitter 512/50, dense)", ranked, b["search_p50_ms"])
    )
    # Each side's wall time is its mean over the alternating runs and its peak memory the highest; the other
    # figures are from its first run.
    for side, first in (("ours", o), ("baseline", b)):
        first["wall_s"] = statistics.mean(r["wall_s"] for r in figures[side])
        first["peak_mib"] = max(r["peak_mib"] for r in figures[side])
    speedup = b["wall_s"] / o["wall_s"]
    non_embedding = non_embedding_share(o)
    # What the 3x target leaves for embedding at our measured rate, with every core busy all the time.
    rate = o["word_pieces"] / o["embed_cpu_s"]
    cpu_for_3x = b["wall_s"] / 3 * o["workers"]
    pieces_for_3x = max(0.0, cpu_for_3x - (o["cpu_s"] - o["embed_cpu_s"])) * rate
    return f"""## PostgreSQL manual: ingestion speed (issue 3)

Command: `python -m bench.run pg-ingest`. Corpus: the PostgreSQL 15 HTML manual from Debian's
`postgresql-doc-15` ({int(o["pages"])} pages). Ours: the production `IngestPipeline` (HTML structure,
sections and headings, 200-token chunks with 30 overlap, title and headings in what is embedded,
all-MiniLM-L6-v2 as an int8 ONNX graph, BM25 vectors, ACL payloads; site navigation left out) into Qdrant's
engine in-process, {int(o["workers"])} documents at a time (one per core, as `copilot ingest` keeps several
in flight and the ingest service embeds each on one core).
Baseline: a plain llama-index `IngestionPipeline` (BeautifulSoup text, `SentenceSplitter(512, 50)`,
`HuggingFaceEmbedding` with the same model, `QdrantVectorStore` on qdrant-client in memory).

| | pages | chunks | word-pieces embedded | wall s, runs in order | wall s, mean | pages/s | chunks/s | peak RSS MiB |
|---|---|---|---|---|---|---|---|---|
| copilot | {int(o["pages"])} | {int(o["chunks"])} | {o["word_pieces"]:,.0f} | {walls["ours"]} | {o["wall_s"]:.0f} | {o["pages"] / o["wall_s"]:.1f} | {o["chunks"] / o["wall_s"]:.1f} | {o["peak_mib"]:.0f} |
| llama-index baseline | {int(b["pages"])} | {int(b["chunks"])} | {b["word_pieces"]:,.0f} | {walls["baseline"]} | {b["wall_s"]:.0f} | {b["pages"] / b["wall_s"]:.1f} | {b["chunks"] / b["wall_s"]:.1f} | {b["peak_mib"]:.0f} |

- Wall time, baseline / copilot, means over runs alternating {", ".join(sides).replace("ours", "copilot")}:
  **{speedup:.2f}x** (target: at least 3x).
- Non-embedding share of our ingest work (parse, chunk, BM25, upsert), in CPU time as documents run side
  by side: **{non_embedding:.0%}** (target: at most 15%); {o["cpu_s"]:.0f} CPU s in all, {o["embed_cpu_s"]:.0f} of them
  embedding.
- Re-ingest of the unchanged corpus: {o["reingest_s"]:.1f} s, {o["reingest_s"] / o["wall_s"]:.1%} of the first ingest
  (target: under 10%); {int(o["reingest_unchanged"])} of {int(o["pages"])} pages reported unchanged.
- Our chunks are smaller (the embedding model reads only 256 word-pieces, so the baseline's 512-token
  chunks are embedded by their first half only), which costs embedding time and buys recall; the
  quality table below is what it buys.
- What 3x would take: we embed {rate:,.0f} word-pieces per CPU second. A third of the baseline's wall
  time on {int(o["workers"])} cores, every core busy all of it, less our non-embedding work, leaves room
  for {pieces_for_3x:,.0f} word-pieces: {pieces_for_3x / o["word_pieces"]:.0%} of the {o["word_pieces"]:,.0f} we embed, {pieces_for_3x / b["word_pieces"]:.0%} of
  the baseline's own {b["word_pieces"]:,.0f}. The target needs a dense index of that much of the manual,
  or an embedding {o["word_pieces"] / max(pieces_for_3x, 1):.1f}x faster per word-piece.

## PostgreSQL manual: retrieval quality (issue 4)

Same run, same pages. Questions: `bench/data/pg15_questions.jsonl`, 120 natural-language
questions with the pages that answer them (checked by `bench/data/check_pg15_questions.py`). A hit is a
passage from an answering page; hit@5 and MRR over the top 5 passages, as a reader of the whole manual.
Latency is in-process (the Search RPC's code without the gRPC hop). Targets: hit@5 >= 0.97, MRR >= 0.85.
Rows without a mode use the retrieval service's defaults (`RetrievalSettings`); the rerank row reorders the
best 12 fused passages (before the cap per document) with the cross-encoder, its order fused with the
first stage's. Labels corrected on 2026-11-30, each added page checked to answer its question: q058 also
accepts checksums.html ("SHOW data_checksums"), q091 sql-createtable.html ("GENERATED ALWAYS AS"), q054
auth-password.html ("set password_encryption = 'scram-sha-256'"), q116 wal-configuration.html ("test the
speeds of different options using the pg_test_fsync program"). The pages the hybrid and dense rankings put in
their top 5 for the questions they missed were read for this; one that answers but whose title the question
names (q070, warm-standby-failover.html) stays out, as the set's checker requires.

{table(scores)}

Missed questions (not in the top 5): {"; ".join(f"{s.name}: {' '.join(s.misses) or 'none'}" for s in scores)}.
"""
