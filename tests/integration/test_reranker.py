"""The cross-encoder (ms-marco-MiniLM-L-12-v2, int8 ONNX, from its PyPI package) on real text."""

from __future__ import annotations

import pytest

from copilot.reranker import OnnxCrossEncoder

QUERY = "Where can I store passwords for database connections?"
PGPASS = (
    "The file .pgpass in a user's home directory can contain passwords to be used if the connection "
    "requires a password (and no password has been specified otherwise)."
)
VACUUM = "VACUUM reclaims storage occupied by dead tuples."
LONG = " ".join(["Each row of the table lists a configuration parameter, its type and its default."] * 12)


@pytest.fixture(scope="module")
def reranker() -> OnnxCrossEncoder:
    return OnnxCrossEncoder()


def test_the_answering_passage_scores_above_unrelated_ones(reranker: OnnxCrossEncoder) -> None:
    pgpass, vacuum, long = reranker.score(QUERY, [PGPASS, VACUUM, LONG])

    assert pgpass > max(vacuum, long) + 5


def test_a_passage_scores_the_same_alone_and_among_others_of_any_length(reranker: OnnxCrossEncoder) -> None:
    (alone,) = reranker.score(QUERY, [PGPASS])
    together = reranker.score(QUERY, [LONG, PGPASS, VACUUM])
    reordered = reranker.score(QUERY, [VACUUM, PGPASS])

    assert together[1] == pytest.approx(alone, abs=1e-5)
    assert reordered[1] == pytest.approx(alone, abs=1e-5)
    assert reranker.score(QUERY, []) == []
