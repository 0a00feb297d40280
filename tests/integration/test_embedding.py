import numpy as np
import pytest

from copilot.embedding import MiniLmEmbedder

TEXTS = [
    "The quarterly revenue grew by twelve percent, driven by enterprise subscriptions in Europe.",
    "Hi",
    "Reset your password from the account settings page.",
    "",
    "Security incidents must be reported to the on-call engineer within fifteen minutes of discovery.",
    "VPN",
    "Expense reports are due on the fifth working day of the month.",
]


@pytest.fixture(scope="module")
def embedder() -> MiniLmEmbedder:
    # A small batch size makes the seven texts span several batches, so reordering is exercised.
    return MiniLmEmbedder(batch_size=3)


def test_returns_unit_vectors_of_model_dimension(embedder: MiniLmEmbedder) -> None:
    vectors = np.array(embedder.embed(TEXTS))
    assert embedder.dimension == 384
    assert embedder.model_id == "all-MiniLM-L6-v2"
    assert vectors.shape == (len(TEXTS), 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(len(TEXTS)), abs=1e-5)
    assert embedder.embed([]) == []


def test_is_deterministic(embedder: MiniLmEmbedder) -> None:
    assert np.allclose(embedder.embed(TEXTS), embedder.embed(TEXTS), atol=1e-6)


def test_results_follow_input_order(embedder: MiniLmEmbedder) -> None:
    batched = np.array(embedder.embed(TEXTS))
    one_by_one = np.array([embedder.embed([text])[0] for text in TEXTS])
    assert np.allclose(batched, one_by_one, atol=1e-4)
    assert len({tuple(np.round(v, 4)) for v in batched}) == len(TEXTS)


def test_truncates_at_256_word_pieces(embedder: MiniLmEmbedder) -> None:
    long_text = "employees accrue paid leave monthly " * 100
    base, extended = embedder.embed([long_text, long_text + " the database failover runbook"])
    assert np.allclose(base, extended, atol=1e-6)
    # These differ after word-piece 177: past the shipped tokenizer's 128 limit, still inside the model's 256.
    medium = "employees accrue paid leave monthly " * 25
    first, second = embedder.embed([medium + "budget", medium + "database failover runbook"])
    assert not np.allclose(first, second, atol=1e-3)


def test_ranks_relevant_text_above_unrelated(embedder: MiniLmEmbedder) -> None:
    question, answer, unrelated = np.array(
        embedder.embed(
            [
                "How many vacation days do employees get?",
                "Employees receive 25 days of paid annual leave",
                "The database failover runbook",
            ]
        )
    )
    assert question @ answer > 0.4
    assert question @ answer > question @ unrelated + 0.3
