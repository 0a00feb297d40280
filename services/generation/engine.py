"""Text generation engines behind one small interface: llama.cpp on CPU, vLLM on GPU.

Both engines are imported lazily so this module loads where only one of them (or neither) is installed.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from copilot.errors import InvalidInput
from services.generation.models import MODELS, get_model_spec, resolve_model_file

SEED = 0


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 384
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    # A JSON schema (as JSON text) the output must match: llama.cpp compiles it to a grammar, vLLM uses
    # its structured outputs. Small models call tools reliably only when they cannot write anything else.
    json_schema: str | None = None


@dataclass(frozen=True)
class TokenDelta:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finished: bool


class Engine(Protocol):
    model_name: str
    context_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]: ...

    def stream_chat(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> Iterator[TokenDelta]: ...


class PromptTooLong(InvalidInput, ValueError):
    """The request cannot fit the model's context; the engine itself is fine."""


def _check_fits(prompt_tokens: int, context_tokens: int) -> None:
    # At least one token must fit after the prompt, or the model cannot answer at all.
    if prompt_tokens >= context_tokens:
        raise PromptTooLong(f"prompt is {prompt_tokens} tokens; the context holds {context_tokens}")


class LlamaCppEngine:
    """llama.cpp on CPU. One context serves one request at a time; concurrent callers wait their turn.

    ``threads`` sizes ggml's OpenMP team directly, so OMP_NUM_THREADS does not matter. Leave
    OMP_WAIT_POLICY at its default: PASSIVE made decoding 4x slower here (15 against 62 tok/s).
    """

    def __init__(self, model_path: Path, model_name: str, context_tokens: int, threads: int = 2) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama_cpp = llama_cpp
        self._llm = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=context_tokens,
            n_threads=threads,
            n_threads_batch=threads,
            seed=SEED,
            verbose=False,
        )
        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{model_path} has no chat template in its GGUF metadata")
        # The same formatter llama-cpp-python's own chat handler builds from the GGUF metadata; we drive it
        # directly because a streamed chat completion does not report token counts.
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._special_text(self._llm.token_eos()),
            bos_token=self._special_text(self._llm.token_bos()),
        )
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self.model_name = model_name
        # llama.cpp pads the context to a multiple of 256, but llama-cpp-python sizes its token buffer by
        # the number asked for: a prompt must fit the smaller of the two.
        self.context_tokens = min(context_tokens, self._llm.n_ctx())

    def _special_text(self, token: int) -> str:
        return self._llm.detokenize([token], special=True).decode("utf-8") if token != -1 else ""

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count_tokens(t) for t in texts]

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        chat: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        formatted = self._formatter(messages=chat)
        prompt = self._llm.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )
        _check_fits(len(prompt), self.context_tokens)
        template_stop = [formatted.stop] if isinstance(formatted.stop, str) else formatted.stop or []
        stop = [s for s in (*params.stop, *template_stop) if s]
        with self._lock:
            chunks = self._llm.create_completion(
                prompt=prompt,
                max_tokens=min(params.max_tokens, self.context_tokens - len(prompt)),
                temperature=params.temperature,
                stop=stop,
                seed=SEED,
                stream=True,
                grammar=self._grammar(params.json_schema),
            )
            for chunk in chunks:
                text = chunk["choices"][0]["text"]  # type: ignore[index]
                if text:
                    yield TokenDelta(text, len(prompt), self._sampled(len(prompt)), False)
            yield TokenDelta("", len(prompt), self._sampled(len(prompt)), True)

    def _grammar(self, json_schema: str | None) -> Any:
        if json_schema is None:
            return None
        # Compiling a schema to GBNF costs milliseconds; the agent sends the same few schemas every step.
        if json_schema not in self._grammars:
            self._grammars[json_schema] = self._llama_cpp.LlamaGrammar.from_json_schema(
                json_schema, verbose=False
            )
        return self._grammars[json_schema]

    def _sampled(self, prompt_tokens: int) -> int:
        # Every sampled token but the latest has been fed back into the context, so the context length
        # counts them; the end-of-turn token is included, as vLLM counts it.
        return self._llm.n_tokens - prompt_tokens + 1


_DONE = object()


class LlamaCppVocabulary:
    """A GGUF model's tokenizer alone (``vocab_only``: no weights, about 0.4 s and tens of MB to load).

    The gRPC service counts prompt tokens with it in its own process, exactly as the engine would, instead
    of asking the Ray Serve replica over a round trip for every answer.
    """

    def __init__(self, model_path: Path) -> None:
        import llama_cpp

        self._llm = llama_cpp.Llama(model_path=str(model_path), vocab_only=True, verbose=False)
        self._lock = threading.Lock()

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            return [len(self._llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)) for t in texts]


class VllmEngine:
    """vLLM's AsyncLLMEngine on a GPU, driven from plain threads.

    The engine is bound to the asyncio loop its first request runs on, so every request runs on one
    private loop thread; each caller's iterator reads its request's outputs from a queue.
    """

    def __init__(
        self, model: str, model_name: str, context_tokens: int, gpu_memory_utilization: float = 0.85
    ) -> None:
        from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams

        self._sampling_params = SamplingParams
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True).start()
        self._engine = AsyncLLMEngine.from_engine_args(
            AsyncEngineArgs(
                model=model,
                max_model_len=context_tokens,
                gpu_memory_utilization=gpu_memory_utilization,
                seed=SEED,
            )
        )
        tokenizer = self._engine.get_tokenizer()
        # get_tokenizer() is a coroutine before vLLM 0.11 and a plain method after.
        if inspect.isawaitable(tokenizer):
            tokenizer = asyncio.run_coroutine_threadsafe(_awaited(tokenizer), self._loop).result()
        self._tokenizer = tokenizer
        self.model_name = model_name
        self.context_tokens = context_tokens

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [self.count_tokens(t) for t in texts]

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        text = self._tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=True,
        )
        # The template already wrote the special tokens; encoding the text again must not add a second BOS.
        prompt = self._tokenizer.encode(text, add_special_tokens=False)
        _check_fits(len(prompt), self.context_tokens)
        sampling = self._sampling_params(
            max_tokens=min(params.max_tokens, self.context_tokens - len(prompt)),
            temperature=params.temperature,
            stop=list(params.stop),
            seed=SEED,
            **_structured_output(params.json_schema),
        )
        outputs: queue.Queue[Any] = queue.Queue()

        async def pump() -> None:
            try:
                async for output in self._engine.generate(
                    {"prompt_token_ids": prompt}, sampling, uuid.uuid4().hex
                ):
                    outputs.put(output)
                outputs.put(_DONE)
            except Exception as error:  # handed to the caller's thread, which raises it
                outputs.put(error)

        request = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        sent = 0
        try:
            while (output := outputs.get()) is not _DONE:
                if isinstance(output, Exception):
                    raise output
                # Outputs are cumulative: send only the text not sent yet.
                completion = output.outputs[0]
                if len(completion.text) > sent:
                    yield TokenDelta(completion.text[sent:], len(prompt), len(completion.token_ids), False)
                    sent = len(completion.text)
                if output.finished:
                    yield TokenDelta("", len(prompt), len(completion.token_ids), True)
        finally:
            # A caller that stops reading early cancels the request, which aborts it inside vLLM.
            request.cancel()


async def _awaited(value: Any) -> Any:
    return await value


def _structured_output(json_schema: str | None) -> dict[str, Any]:
    """vLLM's SamplingParams argument that constrains the output to ``json_schema``."""
    if json_schema is None:
        return {}
    try:  # vLLM 0.11 and later
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(json=json_schema)}
    except ImportError:  # the same feature under its earlier name, removed in 0.12
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=json_schema)}


def build_engine(kind: str, model: str, cache_dir: Path, threads: int, context_tokens: int) -> Engine:
    """``model`` is a catalog name; for vLLM it may also be a Hugging Face model directory or id."""
    if kind == "llama_cpp":
        spec = get_model_spec(model)
        path = resolve_model_file(spec, cache_dir)
        return LlamaCppEngine(path, spec.name, min(context_tokens, spec.context_tokens), threads)
    if kind == "vllm":
        if model in MODELS:
            spec = MODELS[model]
            return VllmEngine(
                str(resolve_model_file(spec, cache_dir)), spec.name, min(context_tokens, spec.context_tokens)
            )
        return VllmEngine(model, model, context_tokens)
    raise ValueError(f"unknown engine kind {kind!r}; expected 'llama_cpp' or 'vllm'")


class EngineCatalog:
    """The models this server answers with, by name; requests pick one or get the default."""

    def __init__(self, engines: Mapping[str, Engine], default: str) -> None:
        if default not in engines:
            raise ValueError(f"default model {default!r} is not among {', '.join(engines)}")
        self._engines = dict(engines)
        self.default = default

    @property
    def names(self) -> list[str]:
        return list(self._engines)

    def get(self, name: str) -> Engine:
        engine = self._engines.get(name or self.default)
        if engine is None:
            raise InvalidInput(f"unknown model {name!r}; this server has {', '.join(self._engines)}")
        return engine

    def engines(self) -> list[Engine]:
        return list(self._engines.values())
