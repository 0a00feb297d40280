"""RayServeEngine on a real local Ray cluster, serving the real SmolLM2-135M model."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import ray

from services.generation import deployment
from services.generation.deployment import EngineStartError, RayServeEngine
from services.generation.engine import ChatMessage, GenerationParams, PromptTooLong
from services.generation.models import UnknownModel

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
QUESTION = [ChatMessage("user", "What is the capital of France?")]


def descendants() -> list[str]:
    """Command lines of this process's live descendants: the local Ray cluster's GCS, raylet and workers."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            # The command name in stat may hold spaces; the parent id is the second field after it.
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            commands[int(proc.name)] = command.decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    found, frontier = [], [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += [commands[pid] for pid in children if commands[pid]]
        frontier += children
    return found


def ray_descendants() -> list[str]:
    return [c for c in descendants() if "ray" in c]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayServeEngine]:
    cache_dir = tmp_path_factory.mktemp("models")
    started = RayServeEngine.start("llama_cpp", MODEL, cache_dir, threads=2, context_tokens=1024)
    yield started
    started.shutdown()


def test_info_and_count_tokens(engine: RayServeEngine) -> None:
    assert engine.info() == {"model_name": MODEL, "context_tokens": 1024}
    assert (engine.model_name, engine.context_tokens) == (MODEL, 1024)
    assert engine.count_tokens("Hello world") > 0


def test_counts_many_texts_in_one_call_and_reports_itself_healthy(engine: RayServeEngine) -> None:
    assert engine.count_tokens_many(["Hello world", ""]) == [engine.count_tokens("Hello world"), 0]
    assert engine.healthy()


def test_tokens_counted_in_this_process_match_the_replicas_count(engine: RayServeEngine) -> None:
    texts = [
        "Hello world",
        "The Q3 2026 travel budget is 412,000 USD [1].",
        "<|im_start|>user\nnot a real turn<|im_end|>",
        "naïve café — 東京 🚀",
        "",
    ]
    in_replica = engine._handle.count_tokens_many.remote(texts).result(timeout_s=60)
    assert engine.count_tokens_many(texts) == in_replica
    # Served from the cache the second time, in any order and with repeats.
    again = engine.count_tokens_many([texts[3], texts[0], texts[3]])
    assert again == [in_replica[3], in_replica[0], in_replica[3]]


def test_the_count_cache_stays_bounded(engine: RayServeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployment, "COUNT_CACHE_ENTRIES", 3)
    texts = [f"text number {n}" for n in range(10)]
    counts = engine.count_tokens_many(texts)
    assert len(engine._counts) == 3
    assert engine.count_tokens_many(texts) == counts


def test_a_json_schema_reaches_the_engine(engine: RayServeEngine) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    params = GenerationParams(max_tokens=32, json_schema=json.dumps(schema))

    text = "".join(d.text for d in engine.stream_chat(QUESTION, params))

    assert list(json.loads(text)) == ["city"]


def test_streams_a_chat_through_the_handle(engine: RayServeEngine) -> None:
    deltas = list(engine.stream_chat(QUESTION, GenerationParams(max_tokens=16)))

    assert "".join(d.text for d in deltas).strip()
    assert len(deltas) >= 3
    assert [d.finished for d in deltas][-2:] == [False, True]
    assert deltas[-1].prompt_tokens > 0
    assert 1 <= deltas[-1].completion_tokens <= 16


def test_abandoned_stream_frees_the_engine(engine: RayServeEngine) -> None:
    story = engine.stream_chat([ChatMessage("user", "Write a long story.")], GenerationParams(max_tokens=900))
    assert isinstance(story, Generator)
    assert next(story).text
    story.close()  # as when a gRPC client hangs up mid-answer

    # The whole story takes over 30 s here; had it run on, the engine would still be busy with it.
    started = time.monotonic()
    deltas = list(engine.stream_chat(QUESTION, GenerationParams(max_tokens=4)))
    assert deltas[-1].finished
    assert time.monotonic() - started < 10


def test_bad_request_raises_and_keeps_the_replica(engine: RayServeEngine) -> None:
    with pytest.raises(PromptTooLong):
        list(engine.stream_chat([ChatMessage("user", "Paris " * 2000)], GenerationParams(max_tokens=4)))
    assert list(engine.stream_chat(QUESTION, GenerationParams(max_tokens=4)))[-1].finished


def test_shutdown_stops_ray(engine: RayServeEngine) -> None:
    assert any("raylet" in c for c in ray_descendants())

    engine.shutdown()

    assert not ray.is_initialized()
    deadline = time.monotonic() + 15
    while ray_descendants() and time.monotonic() < deadline:
        time.sleep(0.5)  # workers exit shortly after their raylet
    assert ray_descendants() == []


def test_unknown_model_fails_before_ray_starts(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel):
        RayServeEngine.start("llama_cpp", "no-such-model", tmp_path, threads=1, context_tokens=512)
    assert not ray.is_initialized()


def test_start_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(EngineStartError, match="did not start within"):
        RayServeEngine.start("llama_cpp", MODEL, tmp_path, threads=1, context_tokens=512, start_timeout_s=0.1)
    assert not ray.is_initialized()


def test_replica_that_cannot_start_reports_why(tmp_path: Path) -> None:
    # llama.cpp cannot make a context of negative size; the constructor fails inside the replica.
    with pytest.raises(EngineStartError, match="DEPLOY_FAILED.*Failed to create llama_context"):
        RayServeEngine.start("llama_cpp", MODEL, tmp_path, threads=1, context_tokens=-5, start_timeout_s=120)
    assert not ray.is_initialized()
