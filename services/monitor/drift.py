"""Window-level detectors: what users ask drifting away from what they asked before, and retrieval getting
worse. Each compares a window of recent events with a baseline window and reports a finding when the window
closes with a shift; findings belong to the event that closed the window.

- ``QueryDriftMonitor`` (sampled tier: it embeds questions) compares question embeddings: the cosine distance
  between the two windows' mean embeddings (how far the centre moved) and a two-sample Kolmogorov-Smirnov
  test per embedding dimension with a Bonferroni correction (whether any dimension's distribution changed
  beyond chance). It reports a shift only when both agree: the test alone flags tiny shifts in large
  windows, the distance alone flags noise in small ones.
- ``RetrievalDecayMonitor`` (inline tier: it only counts) compares the rate of questions retrieval found
  nothing readable for (a one-sided two-proportion z-test) and the top passage scores (KS test plus a
  minimum drop of the median).

The baseline is the first ``baseline_size`` observations and stays fixed, so a slow drift cannot drag it
along; ``reset_baseline()`` starts a new one (after a deliberate change such as a new corpus). Given a
``BaselineStore`` (the flag store), a monitor saves its baseline once complete and loads it when built, so a
restart keeps comparing with it instead of learning a new one from traffic that may already have drifted.
A stored baseline of another size (the setting changed) is ignored and a new one learnt. Windows in progress
are not stored: after a restart the current window starts empty.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from copilot.embedding import Embedder
from copilot.events.v1 import events_pb2
from services.monitor.detectors import Finding, Severity, Tier

log = logging.getLogger(__name__)


class BaselineStore(Protocol):
    """Where window detectors keep their baselines across restarts (``FlagStore`` is one)."""

    def load_baseline(self, name: str) -> tuple[dict[str, Any], bytes] | None: ...

    def save_baseline(self, name: str, summary: dict[str, Any], data: bytes) -> None: ...

    def delete_baseline(self, name: str) -> None: ...


def _load(
    store: BaselineStore | None, name: str, size: int, dtype: str
) -> tuple[dict[str, Any], NDArray[Any]] | None:
    """The stored baseline ``name`` if it was made with this baseline size, else None (and a log line)."""
    if store is None:
        return None
    stored = store.load_baseline(name)
    if stored is None:
        return None
    summary, data = stored
    if summary.get("size") != size or summary.get("dtype") != dtype:
        log.warning(
            "ignoring the stored %s baseline of size %s; the baseline size is now %d, learning a new one",
            name,
            summary.get("size"),
            size,
        )
        return None
    values = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(summary["shape"])
    return summary, values


class DeferredEmbedder:
    """Builds the embedder on first use, on the thread that first embeds: loading the model (exporting it,
    on a first start) takes seconds (tens on a busy machine) that the monitor's start-up and its consumer
    need not wait for."""

    def __init__(self, build: Callable[[], Embedder], model_id: str, dimension: int) -> None:
        self.model_id = model_id
        self.dimension = dimension
        self._build = build
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._build()
        return self._embedder.embed(texts)


@dataclass(frozen=True)
class ShiftTest:
    """Outcome of comparing a window of embeddings with the baseline."""

    cosine_distance: float
    shifted_dimensions: int
    dimensions: int
    min_p_value: float
    shifted: bool


def ks_statistics(baseline: NDArray[np.float64], window: NDArray[np.float64]) -> NDArray[np.float64]:
    """Two-sample Kolmogorov-Smirnov statistic of each column: the largest gap between the two empirical
    distribution functions."""
    base_sorted = np.sort(baseline, axis=0)
    window_sorted = np.sort(window, axis=0)
    pooled = np.concatenate([base_sorted, window_sorted])
    statistics = np.empty(baseline.shape[1])
    for column in range(baseline.shape[1]):
        points = pooled[:, column]
        cdf_base = np.searchsorted(base_sorted[:, column], points, side="right") / len(base_sorted)
        cdf_window = np.searchsorted(window_sorted[:, column], points, side="right") / len(window_sorted)
        statistics[column] = np.max(np.abs(cdf_base - cdf_window))
    return statistics


def ks_p_values(statistics: NDArray[np.float64], n: int, m: int) -> NDArray[np.float64]:
    """Asymptotic p-values of two-sample KS statistics (the Kolmogorov distribution with Stephens'
    small-sample correction), accurate enough for windows of a few dozen and more."""
    effective = math.sqrt(n * m / (n + m))
    lam = (effective + 0.12 + 0.11 / effective) * statistics
    k = np.arange(1, 101)[:, None]
    terms = 2.0 * ((-1.0) ** (k - 1)) * np.exp(-2.0 * (k**2) * (lam[None, :] ** 2))
    p = terms.sum(axis=0)
    # The series does not converge near zero, where the p-value is 1 anyway.
    return np.where(lam < 0.2, 1.0, np.clip(p, 0.0, 1.0))


def embedding_shift(
    baseline: NDArray[np.float64],
    window: NDArray[np.float64],
    alpha: float = 0.01,
    min_distance: float = 0.02,
) -> ShiftTest:
    """Whether ``window`` (rows are embeddings) comes from another distribution than ``baseline``."""
    if baseline.ndim != 2 or window.ndim != 2 or baseline.shape[1] != window.shape[1]:
        raise ValueError(f"need two matrices of equal width, got {baseline.shape} and {window.shape}")
    base_mean, window_mean = baseline.mean(axis=0), window.mean(axis=0)
    norms = float(np.linalg.norm(base_mean) * np.linalg.norm(window_mean))
    distance = 1.0 - float(base_mean @ window_mean) / norms if norms > 0 else 0.0
    p_values = ks_p_values(ks_statistics(baseline, window), len(baseline), len(window))
    dimensions = baseline.shape[1]
    shifted_dimensions = int(np.sum(p_values < alpha / dimensions))
    return ShiftTest(
        cosine_distance=distance,
        shifted_dimensions=shifted_dimensions,
        dimensions=dimensions,
        min_p_value=float(p_values.min()),
        shifted=shifted_dimensions > 0 and distance >= min_distance,
    )


class QueryDriftMonitor:
    """Query-embedding drift; runs in the sampled tier, so it sees a deterministic sample of questions and
    embeds them in batches (the expensive part) as they accumulate."""

    name = "query_drift"
    tier = Tier.SAMPLED

    def __init__(
        self,
        embedder: Embedder,
        *,
        sample_rate: float = 0.2,
        baseline_size: int = 300,
        window_size: int = 300,
        alpha: float = 0.01,
        min_distance: float = 0.02,
        embed_batch: int = 32,
        baselines: BaselineStore | None = None,
    ) -> None:
        if baseline_size < 20 or window_size < 20:
            raise ValueError(
                "baseline_size and window_size need at least 20 questions for the test to mean much"
            )
        self.sample_rate = sample_rate
        self.baseline_size = baseline_size
        self.window_size = window_size
        self.alpha = alpha
        self.min_distance = min_distance
        self._embedder = embedder
        self._embed_batch = embed_batch
        self._pending: list[str] = []
        self._baseline: list[list[float]] = []
        self._window: list[list[float]] = []
        self.windows_tested = 0
        # Per embedding model: another model's vectors are not comparable.
        self._baseline_name = f"{self.name}:{embedder.model_id}"
        self._baselines = baselines
        stored = _load(baselines, self._baseline_name, baseline_size, "<f4")
        if stored is not None:
            self._baseline = stored[1].astype(np.float64).tolist()

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        return self.observe(event)

    def observe(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        """Adds the event's question; returns a finding when this closes a window that shifted."""
        if not event.question.strip():
            return []
        self._pending.append(event.question)
        # Embed once enough questions wait, or when the pending ones would close a window.
        room = (self.baseline_size - len(self._baseline)) + (self.window_size - len(self._window))
        if len(self._pending) < min(self._embed_batch, room):
            return []
        return self.observe_vectors(self._flush())

    def _flush(self) -> list[list[float]]:
        vectors = self._embedder.embed(self._pending)
        self._pending = []
        return vectors

    def observe_vectors(self, vectors: Sequence[Sequence[float]]) -> list[Finding]:
        """Adds embeddings directly (for replaying stored ones); same windows as ``observe``."""
        findings: list[Finding] = []
        for vector in vectors:
            if len(self._baseline) < self.baseline_size:
                self._baseline.append(list(vector))
                if len(self._baseline) == self.baseline_size:
                    self._save_baseline()
                continue
            self._window.append(list(vector))
            if len(self._window) == self.window_size:
                findings.extend(self._close_window())
        return findings

    def reset_baseline(self) -> None:
        self._pending, self._baseline, self._window = [], [], []
        if self._baselines is not None:
            self._baselines.delete_baseline(self._baseline_name)

    def _save_baseline(self) -> None:
        if self._baselines is None:
            return
        # Float32, as the model computes them: half the bytes of float64 and no precision lost.
        vectors = np.asarray(self._baseline, dtype="<f4")
        summary = {"size": self.baseline_size, "dtype": "<f4", "shape": list(vectors.shape)}
        self._baselines.save_baseline(self._baseline_name, summary, vectors.tobytes())

    def _close_window(self) -> list[Finding]:
        test = embedding_shift(
            np.asarray(self._baseline, dtype=np.float64),
            np.asarray(self._window, dtype=np.float64),
            self.alpha,
            self.min_distance,
        )
        self._window = []
        self.windows_tested += 1
        if not test.shifted:
            return []
        reason = (
            f"questions drifted from the baseline: mean-embedding cosine distance {test.cosine_distance:.3f} "
            f"over the last {self.window_size} sampled questions"
        )
        evidence = (
            f"cosine_distance={test.cosine_distance:.4f} (threshold {self.min_distance})",
            f"ks_shifted_dimensions={test.shifted_dimensions}/{test.dimensions} "
            f"(p < {self.alpha / test.dimensions:.1e}; min p {test.min_p_value:.1e})",
            f"baseline={self.baseline_size} window={self.window_size}",
        )
        return [Finding(self.name, Severity.MEDIUM, reason, evidence)]


@dataclass(frozen=True)
class _RetrievalWindow:
    no_result_rate: float
    top_scores: NDArray[np.float64]


class RetrievalDecayMonitor:
    """Retrieval getting worse: more questions with nothing readable found, lower top scores (a stale or
    broken index, an embedding model swapped without re-ingesting, a corpus that no longer covers what
    people ask). Counting is cheap, so it runs inline on every event."""

    name = "retrieval_decay"
    tier = Tier.INLINE
    sample_rate = 1.0

    def __init__(
        self,
        *,
        baseline_size: int = 500,
        window_size: int = 500,
        alpha: float = 0.01,
        min_rate_increase: float = 0.05,
        min_score_drop: float = 0.05,
        baselines: BaselineStore | None = None,
    ) -> None:
        if baseline_size < 20 or window_size < 20:
            raise ValueError("baseline_size and window_size need at least 20 events")
        self.baseline_size = baseline_size
        self.window_size = window_size
        self.alpha = alpha
        self.min_rate_increase = min_rate_increase
        self.min_score_drop = min_score_drop
        self._baseline: _RetrievalWindow | None = None
        self._no_results = 0
        self._count = 0
        self._scores: list[float] = []
        self._baselines = baselines
        stored = _load(baselines, self.name, baseline_size, "<f8")
        if stored is not None:
            summary, scores = stored
            self._baseline = _RetrievalWindow(float(summary["no_result_rate"]), scores.copy())

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        return self.observe(event)

    def observe(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        self._count += 1
        if event.refused or not event.passages:
            self._no_results += 1
        else:
            self._scores.append(max(p.score for p in event.passages))
        if self._count < (self.baseline_size if self._baseline is None else self.window_size):
            return []
        window = _RetrievalWindow(self._no_results / self._count, np.asarray(self._scores, dtype=np.float64))
        self._no_results, self._count, self._scores = 0, 0, []
        if self._baseline is None:
            self._baseline = window
            self._save_baseline(window)
            return []
        return self._compare(self._baseline, window)

    def reset_baseline(self) -> None:
        self._baseline = None
        self._no_results, self._count, self._scores = 0, 0, []
        if self._baselines is not None:
            self._baselines.delete_baseline(self.name)

    def _save_baseline(self, window: _RetrievalWindow) -> None:
        if self._baselines is None:
            return
        scores = window.top_scores.astype("<f8")
        summary = {
            "size": self.baseline_size,
            "no_result_rate": window.no_result_rate,
            "dtype": "<f8",
            "shape": list(scores.shape),
        }
        self._baselines.save_baseline(self.name, summary, scores.tobytes())

    def _compare(self, baseline: _RetrievalWindow, window: _RetrievalWindow) -> list[Finding]:
        findings = []
        p_rate = _rate_increase_p_value(
            baseline.no_result_rate, self.baseline_size, window.no_result_rate, self.window_size
        )
        increase = window.no_result_rate - baseline.no_result_rate
        if p_rate < self.alpha and increase >= self.min_rate_increase:
            reason = (
                f"retrieval found nothing readable for {window.no_result_rate:.0%} of questions, "
                f"up from {baseline.no_result_rate:.0%}"
            )
            evidence = (
                f"no_result_rate={window.no_result_rate:.3f} baseline={baseline.no_result_rate:.3f}",
                f"p={p_rate:.1e} (one-sided two-proportion z-test)",
            )
            findings.append(Finding(self.name, Severity.MEDIUM, reason, evidence))
        if len(baseline.top_scores) >= 20 and len(window.top_scores) >= 20:
            base_median = float(np.median(baseline.top_scores))
            window_median = float(np.median(window.top_scores))
            statistic = ks_statistics(baseline.top_scores[:, None], window.top_scores[:, None])
            p_score = float(ks_p_values(statistic, len(baseline.top_scores), len(window.top_scores))[0])
            if p_score < self.alpha and base_median - window_median >= self.min_score_drop:
                reason = f"top retrieval scores fell: median {window_median:.3f}, baseline {base_median:.3f}"
                evidence = (
                    f"median_top_score={window_median:.4f} baseline={base_median:.4f}",
                    f"ks={float(statistic[0]):.3f} p={p_score:.1e}",
                )
                findings.append(Finding(self.name, Severity.MEDIUM, reason, evidence))
        return findings


def _rate_increase_p_value(base_rate: float, base_n: int, rate: float, n: int) -> float:
    """One-sided p-value that ``rate`` exceeds ``base_rate`` by chance (pooled two-proportion z-test)."""
    pooled = (base_rate * base_n + rate * n) / (base_n + n)
    variance = pooled * (1 - pooled) * (1 / base_n + 1 / n)
    if variance == 0:
        return 1.0
    z = (rate - base_rate) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))
