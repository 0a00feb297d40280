"""Runs a golden set under one variant through the public APIs: for each question, a search (ranking
metrics) and an answer (citations, sentence verdicts, refusals, latency), as the question's user."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from copilot.common.v1 import common_pb2
from copilot.generation.v1 import generation_pb2
from services.evaluation.client import Answered, CopilotApi
from services.evaluation.golden import GoldenItem
from services.evaluation.metrics import cosine
from services.evaluation.scoring import ItemResult, Observation, PassageRef, score_item
from services.evaluation.variants import Variant

# Retrieval allows 50 passages a search; ranking metrics need max(k) distinct documents.
_MAX_SEARCH_DEPTH = 50
_MARKERS = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


@dataclass
class VariantRun:
    name: str
    variant: Variant
    results: list[ItemResult]
    # Cited passages per question id, for human review samples; not part of the report.
    passages: dict[str, list[common_pb2.Passage]] = field(default_factory=dict)


def passage_ref(p: common_pb2.Passage) -> PassageRef:
    return PassageRef(uri=p.uri, document_id=p.document_id, title=p.title, access_reason=p.access_reason)


def verdict_name(verdict: int) -> str:
    return str(generation_pb2.SupportVerdict.Name(verdict)).removeprefix("SUPPORT_VERDICT_").lower()


class AnswerCache:
    """Answers are deterministic (temperature 0): variants that send the very same AnswerRequest to the
    same server (the same model, top-k, search mode and reranking, such as a candidate that keeps the
    defaults) ask it once and share the answer."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str, str, str, int, str, bool], Answered] = {}

    def get(self, api: CopilotApi, user: str, question: str, variant: Variant) -> tuple[Answered, bool]:
        key = (
            api.endpoints.generation,
            user,
            question,
            variant.model,
            variant.top_k,
            variant.search_mode,
            variant.rerank,
        )
        if key in self._answers:
            return self._answers[key], True
        answered = api.answer(
            user, question, variant.top_k, variant.model, variant.search_mode, variant.rerank
        )
        self._answers[key] = answered
        return answered, False


def make_similarity(embedding_cache_dir: Path) -> Callable[[str, str], float]:
    """Cosine of the answer's and the reference's all-MiniLM-L6-v2 embeddings (the copilot's own
    embedder), citation markers removed."""
    from copilot.embedding import MiniLmEmbedder

    embedder = MiniLmEmbedder(cache_dir=embedding_cache_dir)

    def similarity(answer: str, reference: str) -> float:
        a, b = embedder.embed([_MARKERS.sub("", answer), reference])
        return cosine(a, b)

    return similarity


def role_of(api: CopilotApi, item: GoldenItem, user: str) -> str:
    if item.role:
        return item.role
    groups = api.tokens.groups(user)
    return "+".join(groups) if groups else user


def run_variant(
    api: CopilotApi,
    items: Sequence[GoldenItem],
    name: str,
    variant: Variant,
    retrieval_k: Sequence[int],
    cache: AnswerCache,
    similarity: Callable[[str, str], float] | None,
    console: Console,
) -> VariantRun:
    run = VariantRun(name, variant, [])
    depth = min(max(retrieval_k) * 3, _MAX_SEARCH_DEPTH)
    columns: list[Any] = [
        TextColumn(f"eval {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(name, total=len(items), last="")
        for item in items:
            user = item.user or api.tokens.user_for_role(item.role)
            passages, search_ms = api.search(user, item.question, depth, variant.search_mode, variant.rerank)
            answered, reused = cache.get(api, user, item.question, variant)
            final = answered.final
            cited = [c.passage for c in final.citations]
            seen = Observation(
                retrieved=[passage_ref(p) for p in passages],
                answer=final.answer,
                refused=final.refused,
                cited=[passage_ref(p) for p in cited],
                verdicts=[verdict_name(s.verdict) for s in final.sentences],
                miscited=sum(1 for s in final.sentences if s.supported_by),
                latency_ms=answered.total_ms,
                first_token_ms=answered.first_token_ms,
                search_ms=search_ms,
                interaction_id=final.interaction_id,
                model=final.model,
            )
            result = score_item(item, user, role_of(api, item, user), seen, retrieval_k, similarity)
            result.reused_answer = reused
            run.results.append(result)
            run.passages[item.id] = cited
            progress.update(task, advance=1, last=f"{item.id} ({answered.total_ms / 1000:.1f} s)")
    return run
