"""Drift fires on a shifted distribution and stays quiet on a fresh sample of the same one (fixed seeds)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from copilot.common.v1 import common_pb2
from copilot.embedding import MiniLmEmbedder
from copilot.events.v1 import events_pb2
from services.monitor.detectors import Severity, Tier
from services.monitor.drift import (
    QueryDriftMonitor,
    RetrievalDecayMonitor,
    embedding_shift,
    ks_p_values,
    ks_statistics,
)
from services.monitor.flagstore import FlagStore

DIM = 64


def _unit_rows(rng: np.random.Generator, n: int, centre: np.ndarray, spread: float = 1.0) -> np.ndarray:
    rows = centre + spread * rng.standard_normal((n, centre.size))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_ks_statistic_and_p_value_behave_at_the_extremes() -> None:
    rng = np.random.default_rng(1)
    same = rng.standard_normal((200, 3))
    assert ks_statistics(same, same).tolist() == [0.0, 0.0, 0.0]
    assert ks_p_values(np.array([0.0]), 200, 200)[0] == 1.0
    apart = ks_statistics(rng.standard_normal((200, 1)), rng.standard_normal((200, 1)) + 10)
    assert apart[0] == 1.0
    assert ks_p_values(apart, 200, 200)[0] < 1e-30


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_same_distribution_is_not_a_shift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    centre = np.full(DIM, 0.3)
    test = embedding_shift(_unit_rows(rng, 300, centre), _unit_rows(rng, 300, centre))
    assert not test.shifted, test


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_moved_centre_is_a_shift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    centre = np.full(DIM, 0.3)
    moved = centre.copy()
    moved[: DIM // 4] += 0.6
    test = embedding_shift(_unit_rows(rng, 300, centre), _unit_rows(rng, 300, moved))
    assert test.shifted, test
    assert test.cosine_distance > 0.02 and test.shifted_dimensions > 0


def test_significant_but_tiny_shifts_are_below_the_distance_threshold() -> None:
    rng = np.random.default_rng(7)
    centre = np.full(DIM, 0.3)
    nudged = centre.copy()
    nudged[0] += 0.25  # one dimension moves: the KS test sees it, the mean direction barely changes
    test = embedding_shift(_unit_rows(rng, 2000, centre), _unit_rows(rng, 2000, nudged), min_distance=0.02)
    assert test.shifted_dimensions >= 1
    assert not test.shifted


def test_embedding_shift_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        embedding_shift(np.zeros((10, 4)), np.zeros((10, 5)))


class TableEmbedder:
    """Returns the vector prepared for each question, so the windows have known distributions; the real
    model is exercised in the test below."""

    model_id = "table"
    dimension = DIM

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [self.table[t] for t in texts]


def _question(text: str) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(event_id=text, question=text)


def test_query_drift_monitor_reports_when_a_shifted_window_closes() -> None:
    rng = np.random.default_rng(11)
    centre = np.full(DIM, 0.3)
    moved = centre.copy()
    moved[: DIM // 4] += 0.6
    table: dict[str, list[float]] = {}
    plan = [("base", centre, 100), ("same", centre, 100), ("moved", moved, 100)]
    for label, mean, n in plan:
        for i, row in enumerate(_unit_rows(rng, n, mean)):
            table[f"{label}-{i}"] = row.tolist()
    embedder = TableEmbedder(table)
    monitor = QueryDriftMonitor(embedder, baseline_size=100, window_size=100, embed_batch=16)
    assert monitor.tier is Tier.SAMPLED

    findings_by_phase = {}
    for label, _, n in plan:
        findings_by_phase[label] = [f for i in range(n) for f in monitor.observe(_question(f"{label}-{i}"))]
    assert findings_by_phase["base"] == [] and findings_by_phase["same"] == []
    [finding] = findings_by_phase["moved"]
    assert finding.detector == "query_drift" and finding.severity is Severity.MEDIUM
    assert finding.evidence[0].startswith("cosine_distance=")
    assert monitor.windows_tested == 2
    assert embedder.calls < 300 / 8, "questions are embedded in batches"


HR_QUESTIONS = [
    f"{start} {topic}?"
    for start in (
        "How many days of", "Who approves", "What is the policy on", "Where do I request", "Can I carry over",
    )
    for topic in (
        "annual leave", "parental leave", "sick leave", "remote work abroad", "vacation days", "overtime pay",
        "travel expenses", "hotel costs in London",
    )
]  # fmt: skip
DATABASE_QUESTIONS = [
    f"{start} {topic}?"
    for start in ("How do I tune", "Why is", "What causes slow", "How to monitor", "How do I back up")
    for topic in (
        "PostgreSQL vacuum", "the write-ahead log", "replication lag", "index bloat", "connection pooling",
        "query plans with nested loops", "the autovacuum daemon", "logical decoding slots",
    )
]  # fmt: skip


def test_query_drift_with_the_real_embedding_model() -> None:
    embedder = MiniLmEmbedder()
    rng = np.random.default_rng(3)
    hr = [HR_QUESTIONS[i] for i in rng.permutation(len(HR_QUESTIONS))]
    monitor = QueryDriftMonitor(embedder, baseline_size=20, window_size=20, sample_rate=1.0)
    findings = [f for q in hr for f in monitor.observe(_question(q))]
    assert findings == [], "a second window of the same kind of question is no drift"
    shifted = [f for q in DATABASE_QUESTIONS[:20] for f in monitor.observe(_question(q))]
    assert [f.detector for f in shifted] == ["query_drift"]


def _answered(score: float | None) -> events_pb2.InteractionEvent:
    if score is None:
        return events_pb2.InteractionEvent(event_id="e", refused=True)
    return events_pb2.InteractionEvent(event_id="e", passages=[common_pb2.Passage(chunk_id="c", score=score)])


def _window(
    rng: np.random.Generator, n: int, no_result_rate: float, score_mean: float
) -> list[events_pb2.InteractionEvent]:
    return [
        _answered(None if rng.random() < no_result_rate else float(rng.normal(score_mean, 0.05)))
        for _ in range(n)
    ]


def test_retrieval_decay_is_quiet_on_a_steady_service() -> None:
    rng = np.random.default_rng(5)
    monitor = RetrievalDecayMonitor(baseline_size=300, window_size=300)
    events = _window(rng, 300, 0.05, 0.7) + _window(rng, 900, 0.05, 0.7)
    assert [f for e in events for f in monitor.observe(e)] == []


def test_retrieval_decay_flags_more_empty_results() -> None:
    rng = np.random.default_rng(6)
    monitor = RetrievalDecayMonitor(baseline_size=300, window_size=300)
    events = _window(rng, 300, 0.05, 0.7) + _window(rng, 300, 0.25, 0.7)
    [finding] = [f for e in events for f in monitor.observe(e)]
    assert finding.detector == "retrieval_decay"
    assert finding.reason.startswith("retrieval found nothing readable for ")
    assert finding.reason.endswith("of questions, up from 4%")


def test_retrieval_decay_flags_falling_top_scores() -> None:
    rng = np.random.default_rng(8)
    monitor = RetrievalDecayMonitor(baseline_size=300, window_size=300)
    events = _window(rng, 300, 0.05, 0.7) + _window(rng, 300, 0.05, 0.6)
    [finding] = [f for e in events for f in monitor.observe(e)]
    assert finding.reason.startswith("top retrieval scores fell")


# --- baselines kept across restarts ---


def test_retrieval_decay_baseline_survives_a_restart(tmp_path: Path) -> None:
    """A monitor restarted in the middle of a decay must compare with the old baseline; learning a new one
    from the decayed traffic would hide the decay for good."""
    rng = np.random.default_rng(6)
    database = tmp_path / "monitor.sqlite"
    store = FlagStore(database)
    before = RetrievalDecayMonitor(baseline_size=300, window_size=300, baselines=store)
    assert [f for e in _window(rng, 300, 0.05, 0.7) for f in before.observe(e)] == []
    store.close()

    store = FlagStore(database)
    after = RetrievalDecayMonitor(baseline_size=300, window_size=300, baselines=store)
    decayed = _window(rng, 300, 0.25, 0.6)
    findings = [f for e in decayed for f in after.observe(e)]
    assert sorted(f.reason.split(":")[0].split(" for ")[0] for f in findings) == [
        "retrieval found nothing readable",
        "top retrieval scores fell",
    ]
    # Without the store the restarted monitor learns the decayed traffic as its baseline and stays quiet.
    forgetful = RetrievalDecayMonitor(baseline_size=300, window_size=300)
    assert [f for e in decayed + _window(rng, 300, 0.25, 0.6) for f in forgetful.observe(e)] == []
    store.close()


def test_a_stored_baseline_of_another_size_is_ignored_and_reset_forgets_it() -> None:
    rng = np.random.default_rng(6)
    store = FlagStore(":memory:")
    first = RetrievalDecayMonitor(baseline_size=300, window_size=300, baselines=store)
    for e in _window(rng, 300, 0.05, 0.7):
        first.observe(e)
    stored = store.load_baseline("retrieval_decay")
    assert stored is not None and stored[0]["size"] == 300 and len(stored[1]) > 0
    # The setting changed: the old baseline does not fit the test's sample sizes, so a new one is learnt.
    resized = RetrievalDecayMonitor(baseline_size=200, window_size=200, baselines=store)
    assert [f for e in _window(rng, 200, 0.3, 0.7) for f in resized.observe(e)] == []
    assert store.load_baseline("retrieval_decay")[0]["size"] == 200  # type: ignore[index]
    resized.reset_baseline()
    assert store.load_baseline("retrieval_decay") is None
    store.close()


def test_query_drift_baseline_survives_a_restart(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    centre = np.full(DIM, 0.3)
    moved = centre.copy()
    moved[: DIM // 4] += 0.6
    table = {f"base-{i}": row.tolist() for i, row in enumerate(_unit_rows(rng, 100, centre))}
    table |= {f"moved-{i}": row.tolist() for i, row in enumerate(_unit_rows(rng, 100, moved))}
    database = tmp_path / "monitor.sqlite"
    store = FlagStore(database)
    # Batches of 20 close the 100-question baseline with its last question.
    options: dict[str, Any] = {"baselines": store, "embed_batch": 20}
    before = QueryDriftMonitor(TableEmbedder(table), baseline_size=100, window_size=100, **options)
    assert [f for i in range(100) for f in before.observe(_question(f"base-{i}"))] == []
    store.close()

    store = FlagStore(database)
    options["baselines"] = store
    after = QueryDriftMonitor(TableEmbedder(table), baseline_size=100, window_size=100, **options)
    findings = [f for i in range(100) for f in after.observe(_question(f"moved-{i}"))]
    assert [f.detector for f in findings] == ["query_drift"]
    # Baselines are kept per embedding model: another model's vectors would not be comparable.
    other = TableEmbedder(table)
    other.model_id = "another-model"
    fresh = QueryDriftMonitor(other, baseline_size=100, window_size=100, **options)
    assert [f for i in range(100) for f in fresh.observe(_question(f"moved-{i}"))] == []
    store.close()
