"""Generation: time to first token and decode speed for a ~1,500-token RAG prompt, and what the serving
hops add, as three paths measured in the same run with the same prompts and the same model:

1. Baseline: llama.cpp called in-process (``LlamaCppEngine``).
2. Ray Serve: the same model in a Serve replica, called through its handle (``RayServeEngine``).
3. Full path: the GenerationService ``Answer`` RPC over gRPC on loopback: token check, model pick, prompt
   budgeting (one token-count call to the replica), Ray Serve, streaming back. Retrieval is not part of it
   (its latency is benchmarked on its own): the passages come from an in-process source, and the event
   goes to an in-memory sink.

Every call gets a prompt of its own (the passages rotate), so that no call finds the one before it in
llama.cpp's prompt cache beyond the fixed rules; the prompts are of the same size. The hop cost is
measured apart, with a one-token answer to a short prompt, where the model's own time is small enough for
a few milliseconds to show.

``python -m bench.generation`` (``--model smollm2-135m`` for a quick look at the hop cost alone)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from copilot.auth import TokenVerifier
from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer, load_or_create_key, load_users, serve_in_thread
from copilot.events.v1 import events_pb2
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.grpc_server import GrpcServer
from copilot.ports import free_port
from copilot.retrieval.v1 import retrieval_pb2
from copilot.settings import AuthSettings
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.deployment import RayServeEngine
from services.generation.engine import ChatMessage, Engine, EngineCatalog, GenerationParams, build_engine
from services.generation.models import MODELS
from services.generation.prompt import build_messages, prompt_tokens
from services.generation.service import GenerationServicer
from services.generation.settings import GenerationSettings

REPO = Path(__file__).resolve().parent.parent
COMMAND = "python -m bench.generation"
# The default model, and the one the demo answers with; the 0.5B model is not installed by `make`.
MODEL = "qwen2.5-coder-1.5b"
THREADS = 2
CONTEXT_TOKENS = 4096
PROMPT_TOKENS = 1500
ANSWER_TOKENS = 32
ROUNDS = 3
HOP_ROUNDS = 20
SETTLE_S = 0.5
# Paired differences spread wider than this (interquartile range) cannot show a 10 ms overhead.
NOISE_LIMIT_MS = 50.0
QUESTION = "What do these documents say about budgets, approvals and time off?"


@dataclass
class Timing:
    ttft_ms: float
    # Tokens per second after the first, while the answer streams.
    decode_tps: float


class FixedSource:
    """Hands the Answerer the passages of the current round, whatever the query."""

    def __init__(self) -> None:
        self.passages: list[common_pb2.Passage] = []

    def search(
        self,
        token: str,
        query: str,
        top_k: int,
        audience: Sequence[common_pb2.Audience] = (),
        uri_prefixes: Sequence[str] = (),
        *,
        mode: retrieval_pb2.SearchMode = retrieval_pb2.SEARCH_MODE_UNSPECIFIED,
        rerank: bool = False,
    ) -> list[common_pb2.Passage]:
        return self.passages


class LastEvent:
    def __init__(self) -> None:
        self.event = events_pb2.InteractionEvent()

    def publish(self, event: events_pb2.InteractionEvent) -> None:
        self.event = event


def corpus_passages() -> list[common_pb2.Passage]:
    """Paragraphs of the sample corpus's Markdown documents, as retrieval would return them."""
    passages = []
    for path in sorted((REPO / "sample" / "corpus").rglob("*.md")):
        title = path.stem.replace("-", " ").capitalize()
        for n, paragraph in enumerate(p.strip() for p in path.read_text().split("\n\n")):
            if len(paragraph) > 200:
                passages.append(
                    common_pb2.Passage(chunk_id=f"{path.stem}#{n}", title=title, text=paragraph, score=0.8)
                )
    return passages


def prompts_of_passages(engine: Engine, count: int) -> list[list[common_pb2.Passage]]:
    """``count`` sets of passages whose RAG prompt is about PROMPT_TOKENS, each starting at a different
    passage, so that no prompt finds the one before it in llama.cpp's prompt cache past the rules."""
    pool = corpus_passages()
    chosen = []
    for n in range(count):
        start = n * len(pool) // count
        rotated = pool[start:] + pool[:start]
        picked: list[common_pb2.Passage] = []
        for passage in rotated:
            messages, _ = build_messages(QUESTION, [*picked, passage], engine.count_tokens_many, 10_000)
            if prompt_tokens(messages, engine.count_tokens_many) > PROMPT_TOKENS:
                break
            picked.append(passage)
        chosen.append(picked)
    return chosen


def time_engine(engine: Engine, messages: list[dict[str, str]], max_tokens: int) -> Timing:
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    chat = [ChatMessage(m["role"], m["content"]) for m in messages]
    for delta in engine.stream_chat(chat, GenerationParams(max_tokens=max_tokens)):
        if delta.text and not first:
            first = time.perf_counter()
        if delta.text:
            last = time.perf_counter()
        tokens = delta.completion_tokens
    return Timing((first - started) * 1000, _rate(tokens, first, last))


def time_rpc(
    stub: generation_pb2_grpc.GenerationServiceStub,
    token: str,
    events: LastEvent,
    question: str,
    max_tokens: int,
) -> Timing:
    started = time.perf_counter()
    first = last = 0.0
    responses = stub.Answer(
        generation_pb2.AnswerRequest(question=question), metadata=bearer(token), timeout=600
    )
    for response in responses:
        if response.delta:
            first = first or time.perf_counter()
            last = time.perf_counter()
            if max_tokens == 1:
                # As a client that hangs up: the replica stops at its next token.
                responses.cancel()
                return Timing((first - started) * 1000, 0.0)
    return Timing((first - started) * 1000, _rate(events.event.completion_tokens, first, last))


def _rate(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


@dataclass
class Stack:
    direct: Engine
    served: RayServeEngine
    stub: generation_pb2_grpc.GenerationServiceStub
    token: str
    source: FixedSource
    events: LastEvent
    policy: AnswerPolicy
    close: Callable[[], None]


def start(tmp: Path, progress: Progress, model: str) -> Stack:
    task = progress.add_task("starting llama.cpp, Ray Serve and the gRPC service", total=None)
    cache = REPO / ".copilot" / "models"  # the demo's model cache: a split model is joined only once
    direct = build_engine("llama_cpp", model, cache, THREADS, CONTEXT_TOKENS)
    served = RayServeEngine.start(
        "llama_cpp", model, cache, THREADS, CONTEXT_TOKENS, ray_temp_dir=Path(tempfile.mkdtemp(prefix="ray"))
    )
    key = load_or_create_key(tmp / "key.pem")
    port = free_port()
    issuer = DevIssuer(
        f"http://127.0.0.1:{port}/realms/copilot", "copilot", key, load_users(REPO / "sample" / "users.json")
    )
    http = serve_in_thread(issuer, "127.0.0.1", port)
    auth = AuthSettings(issuer=issuer.issuer, audience=issuer.audience)
    source, events = FixedSource(), LastEvent()
    # Every passage is relevant, and the answer is as long as the baseline's.
    policy = AnswerPolicy(min_relevance=0.0, max_answer_tokens=ANSWER_TOKENS)
    answerer = Answerer(source, EngineCatalog({model: served}, model), events, policy, b"bench-key")
    server = GrpcServer("generation", GenerationSettings(port=0, auth=auth), TokenVerifier(auth))
    slot = server.add_service(
        generation_pb2_grpc.add_GenerationServiceServicer_to_server, "copilot.generation.v1.GenerationService"
    )
    server.start()
    slot.fill(GenerationServicer(answerer))
    server.set_serving(True)
    stub = generation_pb2_grpc.GenerationServiceStub(open_channel(f"127.0.0.1:{server.port}"))
    progress.remove_task(task)

    def close() -> None:
        server.stop(1)
        http.shutdown()
        served.shutdown()

    return Stack(direct, served, stub, issuer.mint("alice"), source, events, policy, close)


def measure(
    stack: Stack, prompts: list[tuple[list[common_pb2.Passage], str]], max_tokens: int
) -> list[Timing]:
    """Baseline, Ray Serve and the full path, each on its own prompt of the same size: a second path on
    the same replica would find the first one's prompt in the cache."""
    budget = CONTEXT_TOKENS - stack.policy.answer_reserve_tokens
    chats = []
    for passages, question in prompts[:2]:
        messages, kept = build_messages(question, passages, stack.direct.count_tokens_many, budget)
        assert kept == len(passages)
        chats.append(messages)
    stack.source.passages, question = prompts[2]
    timings = []
    for timed in (
        lambda: time_engine(stack.direct, chats[0], max_tokens),
        lambda: time_engine(stack.served, chats[1], max_tokens),
        lambda: time_rpc(stack.stub, stack.token, stack.events, question, max_tokens),
    ):
        # llama.cpp's worker threads keep polling for a while after an answer; without a pause the next
        # path (in another process) would start on cores the previous one still spins on.
        time.sleep(SETTLE_S)
        timings.append(timed())
    return timings


def run(console: Console, model: str = MODEL) -> str:
    with (
        tempfile.TemporaryDirectory(prefix="copilot-bench-generation-") as tmp,
        Progress(console=console, transient=True) as progress,
    ):
        stack = start(Path(tmp), progress, model)
        try:
            # Each path's first call pages the weights in: not part of any figure.
            warm = common_pb2.Passage(
                chunk_id="w", title="Warm-up", text="The canteen opens at 8.", score=0.8
            )
            measure(stack, [([warm], f"When does the canteen open, {p}?") for p in range(3)], 1)
            sets = prompts_of_passages(stack.direct, 3 * ROUNDS)
            sizes = [
                prompt_tokens(build_messages(QUESTION, p, stack.direct.count_tokens_many, 10_000)[0],
                              stack.direct.count_tokens_many)
                for p in sets
            ]  # fmt: skip
            task = progress.add_task(f"{ROUNDS} rounds, ~{PROMPT_TOKENS}-token prompts", total=ROUNDS)
            long: list[list[Timing]] = []
            for r in range(ROUNDS):
                long.append(measure(stack, [(sets[3 * r + p], QUESTION) for p in range(3)], ANSWER_TOKENS))
                progress.advance(task)
            # The hop cost: a one-token answer to a short prompt, where only the question is new to the
            # cache, and as long for every path.
            short = common_pb2.Passage(
                chunk_id="s", title="Parking", text="Visitors park in zone C.", score=0.8
            )
            task = progress.add_task(f"{HOP_ROUNDS} rounds, one-token answers", total=HOP_ROUNDS)
            hops: list[list[Timing]] = []
            for n in range(HOP_ROUNDS):
                hops.append(
                    measure(stack, [([short], f"Where do visitors park, case {n}{p}?") for p in "abc"], 1)
                )
                progress.advance(task)
        finally:
            stack.close()
    return report(model, long, hops, sizes)


def report(model: str, long: list[list[Timing]], hops: list[list[Timing]], sizes: list[int]) -> str:
    def p50(rows: list[list[Timing]], path: int, field: str) -> float:
        return statistics.median(getattr(r[path], field) for r in rows)

    def extra(rows: list[list[Timing]], path: int, over: int) -> float:
        # Paired by round: both sides ran a moment apart on prompts of the same size.
        return statistics.median(r[path].ttft_ms - r[over].ttft_ms for r in rows)

    names = [
        "baseline: llama.cpp in-process",
        "Ray Serve replica through its handle",
        "full path: gRPC Answer (token check, budgeting, Ray Serve)",
    ]
    long_rows = "\n".join(
        f"| {name} | {p50(long, i, 'ttft_ms'):,.0f} | {p50(long, i, 'decode_tps'):.1f} | "
        f"{p50(long, i, 'ttft_ms') / p50(long, 0, 'ttft_ms'):.2f}x |"
        for i, name in enumerate(names)
    )
    hop_rows = "\n".join(
        f"| {name} | {p50(hops, i, 'ttft_ms'):.1f} | {extra(hops, i, 0):+.1f} |"
        for i, name in enumerate(names)
    )
    overhead = extra(hops, 2, 0)
    quartiles = statistics.quantiles([r[2].ttft_ms - r[0].ttft_ms for r in hops], n=4)
    spread = quartiles[2] - quartiles[0]
    if spread > NOISE_LIMIT_MS:
        verdict = (
            f"not measurable in this run (paired differences spread over {spread:.0f} ms: a busy machine)"
        )
    else:
        verdict = "met" if overhead <= 10 else "missed"
    command = COMMAND if model == MODEL else f"{COMMAND} --model {model}"
    return f"""## Generation with {model}: time to first token, decode speed and the cost of the serving hops

Command: `{command}` (part of `make bench`). Model: {model} ({MODELS[model].upstream}), llama.cpp on {THREADS} threads,
{CONTEXT_TOKENS}-token context. Prompts of {min(sizes):,}-{max(sizes):,} tokens (RAG prompt over sample-corpus
passages), {ANSWER_TOKENS}-token answers, greedy; {ROUNDS} rounds, medians. Retrieval is not in these figures.

| {ROUNDS} rounds, ~{PROMPT_TOKENS:,}-token prompt | TTFT p50 ms | decode tokens/s p50 | TTFT ratio to baseline |
|---|---|---|---|
{long_rows}

| hop cost: one-token answer to a short prompt, {HOP_ROUNDS} rounds | TTFT p50 ms | added to baseline, paired p50 ms |
|---|---|---|
{hop_rows}

Ray Serve + gRPC overhead (p50, paired): {overhead:+.1f} ms, interquartile range {spread:.1f} ms; target <= 10 ms:
{verdict}. The gRPC service alone (token check, model pick, one token-count call, streaming) over the Ray
Serve handle: {extra(hops, 2, 1):+.1f} ms (paired p50).
"""


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL, choices=sorted(MODELS))
    # Printed as is: the console would wrap the table rows.
    print(run(Console(stderr=True), parser.parse_args().model))
    sys.exit(0)
