from pathlib import Path

import numpy as np
import pytest

from copilot import embedding
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
    return MiniLmEmbedder()


def test_vectors_stay_close_to_the_sentence_transformers_reference(embedder: MiniLmEmbedder) -> None:
    # The int8 graph moves vectors a little; the module docstring has what that does to ranking.
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(embedding.model_path()), device="cpu", local_files_only=True)
    reference.max_seq_length = embedding.MAX_TOKENS
    texts = [*TEXTS, "employees accrue paid leave monthly " * 100, "naïve café 東京 🙂"]
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    cosines = (np.array(embedder.embed(texts)) * expected).sum(axis=1)
    assert cosines.min() > 0.97
    assert cosines.mean() > 0.985


def test_the_onnx_export_is_cached_and_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    MiniLmEmbedder(cache_dir=tmp_path)
    # The quantizer's advice is not passed on to whoever runs the first export.
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    [cached] = tmp_path.glob("*.onnx")
    assert cached.name == embedding.onnx_file_name()
    exported_at = cached.stat().st_mtime_ns
    again = MiniLmEmbedder(cache_dir=tmp_path)
    assert cached.stat().st_mtime_ns == exported_at
    assert len(again.embed(["hello"])[0]) == 384
    assert not list(tmp_path.glob("*.part"))


def test_an_unwritable_cache_costs_an_export_but_still_embeds(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    assert len(MiniLmEmbedder(cache_dir=blocked).embed(["hello"])[0]) == 384


def test_returns_unit_vectors_of_model_dimension(embedder: MiniLmEmbedder) -> None:
    vectors = np.array(embedder.embed(TEXTS))
    assert embedder.dimension == 384
    assert embedder.model_id == "all-MiniLM-L6-v2-int8"
    assert vectors.shape == (len(TEXTS), 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(len(TEXTS)), abs=1e-5)
    assert embedder.embed([]) == []


def test_is_deterministic(embedder: MiniLmEmbedder) -> None:
    assert np.allclose(embedder.embed(TEXTS), embedder.embed(TEXTS), atol=1e-6)


def test_a_text_gets_the_same_vector_whatever_it_is_embedded_with(embedder: MiniLmEmbedder) -> None:
    together = np.array(embedder.embed(TEXTS))
    one_by_one = np.array([embedder.embed([text])[0] for text in TEXTS])
    reordered = np.array(embedder.embed(TEXTS[::-1]))[::-1]
    assert np.allclose(together, one_by_one, atol=1e-6)
    assert np.allclose(together, reordered, atol=1e-6)
    assert len({tuple(np.round(v, 4)) for v in together}) == len(TEXTS)


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


def test_texts_run_side_by_side_with_the_same_vectors(embedder: MiniLmEmbedder) -> None:
    texts = [f"{text} ({i})" for i, text in enumerate(TEXTS * 3)]
    parallel = MiniLmEmbedder(threads=2)
    assert np.allclose(parallel.embed(texts), embedder.embed(texts), atol=1e-6)
