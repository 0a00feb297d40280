"""The metrics as plain functions: ranking quality, citation overlap, answer overlap, percentiles and the
paired bootstrap. No I/O, so each one is checked against numbers worked out by hand."""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def hit_at_k(grades: Sequence[float], k: int) -> float:
    """1 when any of the first ``k`` ranked results is relevant (grade above zero), else 0."""
    _check_k(k)
    return 1.0 if any(g > 0 for g in grades[:k]) else 0.0


def reciprocal_rank(grades: Sequence[float]) -> float:
    """1 / rank of the first relevant result; 0 when none is relevant."""
    for rank, grade in enumerate(grades, 1):
        if grade > 0:
            return 1.0 / rank
    return 0.0


def dcg(grades: Sequence[float], k: int) -> float:
    """Discounted cumulative gain with exponential gain: sum of (2^grade - 1) / log2(rank + 1)."""
    _check_k(k)
    return sum((2.0**g - 1.0) / math.log2(rank + 1) for rank, g in enumerate(grades[:k], 1))


def ndcg_at_k(grades: Sequence[float], ideal_grades: Sequence[float], k: int) -> float:
    """DCG of the ranking over the DCG of the ideal ranking of every relevant item (``ideal_grades``,
    which includes relevant items the ranking missed). Binary relevance is grades of 0 and 1."""
    ideal = dcg(sorted((g for g in ideal_grades if g > 0), reverse=True), k)
    if ideal == 0:
        raise ValueError("nDCG is undefined without a relevant item")
    return dcg(grades, k) / ideal


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def set_precision_recall(found: set[str], expected: set[str]) -> tuple[float | None, float | None]:
    """Precision (None when nothing was found) and recall (None when nothing was expected)."""
    hits = len(found & expected)
    precision = hits / len(found) if found else None
    recall = hits / len(expected) if expected else None
    return precision, recall


_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
# "412,000" and "412 000" are the same figure; keep them one token so a figure counts once.
_THOUSANDS = re.compile(r"(?<=\d)[,\u202f ](?=\d{3}\b)")


def normalize_answer(text: str) -> str:
    """SQuAD-style: lower case, no citation markers, punctuation or articles, single spaces."""
    text = _CITATION.sub(" ", text.lower())
    text = _THOUSANDS.sub("", text)
    text = _ARTICLES.sub(" ", text.translate(_PUNCTUATION))
    return " ".join(text.split())


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall between normalised answer and reference."""
    predicted = normalize_answer(prediction).split()
    wanted = normalize_answer(reference).split()
    if not predicted or not wanted:
        return 1.0 if predicted == wanted else 0.0
    common = sum((Counter(predicted) & Counter(wanted)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(va) * np.linalg.norm(vb))
    if norms == 0:
        raise ValueError("cosine similarity is undefined for a zero vector")
    return float(va @ vb / norms)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


@dataclass(frozen=True)
class PairedDifference:
    """Candidate minus baseline over the questions both have a value for, with a bootstrap interval."""

    n: int
    diff: float
    ci_low: float | None
    ci_high: float | None

    def direction(self, higher_is_better: bool) -> str:
        """ "better", "worse" or "no clear difference": only an interval that excludes zero counts."""
        if self.ci_low is None or self.ci_high is None:
            return "no clear difference"
        if self.ci_low > 0:
            return "better" if higher_is_better else "worse"
        if self.ci_high < 0:
            return "worse" if higher_is_better else "better"
        return "no clear difference"


def paired_bootstrap(
    baseline: Mapping[str, float | None],
    candidate: Mapping[str, float | None],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference | None:
    """Mean per-question difference and its percentile bootstrap interval, resampling questions (the
    same draw for both variants, hence paired). A fixed seed gives the same interval every run.

    None when no question has a value in both. With a single question there is no interval: one
    question cannot tell progress from noise."""
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    keys = sorted(k for k, v in baseline.items() if v is not None and candidate.get(k) is not None)
    if not keys:
        return None
    diffs = np.array([float(candidate[k]) - float(baseline[k]) for k in keys])  # type: ignore[arg-type]
    point = float(diffs.mean())
    if len(keys) < 2:
        return PairedDifference(1, point, None, None)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(resamples, len(keys)))
    means = diffs[draws].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedDifference(len(keys), point, float(low), float(high))
