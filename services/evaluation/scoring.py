"""From what the copilot returned for one golden question to that question's metrics, and from many
questions to the figures per role and overall."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from services.evaluation.golden import GoldenItem, source_matches
from services.evaluation.metrics import (
    hit_at_k,
    mean,
    ndcg_at_k,
    percentile,
    reciprocal_rank,
    set_precision_recall,
    token_f1,
)

SUPPORTED = "supported"
LATENCIES = ("latency_ms", "first_token_ms", "search_ms")
LATENCY_STATS = ("mean", "p50", "p90", "p95")
# Metrics where a smaller figure is the better one.
_LOWER_IS_BETTER = ("false_refusal", "miscited_share")

LABELS = {
    "mrr": "MRR",
    "citation_precision": "citation precision",
    "citation_recall": "citation recall",
    "supported_share": "supported sentences",
    "miscited_share": "wrongly cited sentences",
    "correct_refusal": "correct refusals",
    "false_refusal": "false refusals",
    "no_leak": "no forbidden source",
    "answer_similarity": "answer similarity",
    "token_f1": "token F1",
    "human_good_rate": "human: good",
}


def higher_is_better(metric: str) -> bool:
    return not (metric in _LOWER_IS_BETTER or metric.endswith(("_ms", *(f"_ms_{s}" for s in LATENCY_STATS))))


_LATENCY_LABELS = {
    "latency_ms": "answer latency",
    "first_token_ms": "first token",
    "search_ms": "search time",
}


def label(metric: str) -> str:
    for name, title in _LATENCY_LABELS.items():
        if metric == name or metric.startswith(f"{name}_"):
            return f"{title} {metric.removeprefix(name).lstrip('_')}".strip()
    return LABELS.get(metric, metric.replace("_", " "))


def quality_metrics(retrieval_k: Sequence[int]) -> list[str]:
    """Per-question metrics in report order; the retrieval ones depend on the cut-offs."""
    return [
        *(f"hit@{k}" for k in retrieval_k),
        "mrr",
        f"ndcg@{max(retrieval_k)}",
        "citation_precision",
        "citation_recall",
        "supported_share",
        "miscited_share",
        "correct_refusal",
        "false_refusal",
        "no_leak",
        "answer_similarity",
        "token_f1",
    ]


def summary_metrics(retrieval_k: Sequence[int]) -> list[str]:
    """Every figure a variant's summary can hold: the quality metrics and the latency statistics."""
    return [
        *quality_metrics(retrieval_k),
        *(f"{name}_{stat}" for name in LATENCIES for stat in LATENCY_STATS),
    ]


@dataclass(frozen=True)
class PassageRef:
    uri: str
    document_id: str
    title: str
    access_reason: str


@dataclass
class Observation:
    """What the public API returned for one question under one variant."""

    retrieved: list[PassageRef]
    answer: str
    refused: bool
    cited: list[PassageRef]
    verdicts: list[str]
    latency_ms: float
    first_token_ms: float
    search_ms: float
    interaction_id: str = ""
    model: str = ""
    # Sentences that another given source supports while what they cite does not (or they cite nothing).
    miscited: int = 0
    # Passages the answer was written from, for human review; not kept in reports.
    passages: list[Any] = field(default_factory=list, repr=False)


@dataclass
class ItemResult:
    id: str
    user: str
    role: str
    question: str
    must_refuse: bool
    refused: bool
    answer: str
    retrieved: list[str]
    cited: list[str]
    metrics: dict[str, float | None]
    latency_ms: float
    first_token_ms: float
    search_ms: float
    interaction_id: str = ""
    model: str = ""
    reused_answer: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ItemResult:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def _unique_documents(passages: Sequence[PassageRef]) -> list[str]:
    """Documents in the order their first passage ranks: the ranking retrieval metrics are taken over,
    so a document with three passages in the top-k counts once."""
    return list(dict.fromkeys(p.uri for p in passages))


def _grade(uri: str, item: GoldenItem) -> int:
    return max((s.grade for s in item.expected_sources if source_matches(uri, s.doc)), default=0)


def score_item(
    item: GoldenItem,
    user: str,
    role: str,
    seen: Observation,
    retrieval_k: Sequence[int],
    similarity: Callable[[str, str], float] | None = None,
) -> ItemResult:
    """Every metric of one question; None where it does not apply (no retrieval metrics for a question
    that must be refused, no similarity without a reference answer or against one that was cut off)."""
    metrics: dict[str, float | None] = dict.fromkeys(quality_metrics(retrieval_k))
    ranked = _unique_documents(seen.retrieved)
    cited_docs = _unique_documents(seen.cited)
    if item.expected_sources:
        grades = [_grade(uri, item) for uri in ranked]
        for k in retrieval_k:
            metrics[f"hit@{k}"] = hit_at_k(grades, k)
        metrics["mrr"] = reciprocal_rank(grades)
        ideal = [s.grade for s in item.expected_sources]
        metrics[f"ndcg@{max(retrieval_k)}"] = ndcg_at_k(grades, ideal, max(retrieval_k))
        # A document counts as cited correctly when it is expected; recall counts expected documents
        # found among the citations.
        relevant_cited = {d for d in cited_docs if _grade(d, item) > 0}
        precision, _ = set_precision_recall(set(cited_docs), relevant_cited)
        found = {s.doc for s in item.expected_sources if any(source_matches(d, s.doc) for d in cited_docs)}
        _, recall = set_precision_recall(found, {s.doc for s in item.expected_sources})
        metrics["citation_precision"] = precision
        metrics["citation_recall"] = recall
    if seen.verdicts:
        metrics["supported_share"] = sum(v == SUPPORTED for v in seen.verdicts) / len(seen.verdicts)
        metrics["miscited_share"] = seen.miscited / len(seen.verdicts)
    if item.must_refuse:
        metrics["correct_refusal"] = 1.0 if seen.refused else 0.0
    else:
        metrics["false_refusal"] = 1.0 if seen.refused else 0.0
    if item.forbidden_sources:
        leaked = any(
            source_matches(p.uri, ref)
            for p in [*seen.retrieved, *seen.cited]
            for ref in item.forbidden_sources
        )
        metrics["no_leak"] = 0.0 if leaked else 1.0
    if item.scores_answer_text:
        metrics["token_f1"] = token_f1(seen.answer, item.reference_answer)
        if similarity is not None:
            metrics["answer_similarity"] = similarity(seen.answer, item.reference_answer)
    return ItemResult(
        id=item.id,
        user=user,
        role=role,
        question=item.question,
        must_refuse=item.must_refuse,
        refused=seen.refused,
        answer=seen.answer,
        retrieved=ranked,
        cited=cited_docs,
        metrics=metrics,
        latency_ms=seen.latency_ms,
        first_token_ms=seen.first_token_ms,
        search_ms=seen.search_ms,
        interaction_id=seen.interaction_id,
        model=seen.model,
    )


@dataclass
class Summary:
    """Figures of one scope (overall or a role): metric means, latency statistics, and how many questions
    each figure rests on."""

    values: dict[str, float]
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "counts": self.counts}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Summary:
        return cls(dict(raw.get("values", {})), dict(raw.get("counts", {})))


def summarize(results: Sequence[ItemResult], retrieval_k: Sequence[int]) -> Summary:
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    for metric in quality_metrics(retrieval_k):
        present = [r.metrics.get(metric) for r in results if r.metrics.get(metric) is not None]
        average = mean(present)
        if average is not None:
            values[metric], counts[metric] = average, len(present)
    for name in LATENCIES:
        observed = [float(getattr(r, name)) for r in results]
        if not observed:
            continue
        values[f"{name}_mean"] = sum(observed) / len(observed)
        for q in (50, 90, 95):
            values[f"{name}_p{q}"] = percentile(observed, q)
        for stat in LATENCY_STATS:
            counts[f"{name}_{stat}"] = len(observed)
    return Summary(values, counts)


def summarize_by_role(
    results: Sequence[ItemResult], retrieval_k: Sequence[int]
) -> tuple[Summary, dict[str, Summary]]:
    roles = sorted({r.role for r in results})
    return summarize(results, retrieval_k), {
        role: summarize([r for r in results if r.role == role], retrieval_k) for role in roles
    }
