"""Stand-ins the generation tests share: a retrieval server that records what it was asked, an event sink,
and an engine wrapper that records the prompts it was given. The engine underneath and the gRPC servers
are real."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc

from copilot.common.v1 import common_pb2
from copilot.events.v1 import events_pb2
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.generation.engine import ChatMessage, Engine, GenerationParams, TokenDelta

VACATION = common_pb2.Passage(
    chunk_id="vacation#0",
    document_id="vacation",
    title="Vacation policy",
    text="Full-time employees receive 25 days of paid vacation per calendar year.",
    score=0.8,
    access_reason="everyone",
)


@dataclass
class RecordingRetrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    passages: list[common_pb2.Passage] = field(default_factory=lambda: [VACATION])
    requests: list[retrieval_pb2.SearchRequest] = field(default_factory=list)
    fail_with: grpc.StatusCode | None = None

    def Search(  # noqa: N802
        self, request: retrieval_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> retrieval_pb2.SearchResponse:
        self.requests.append(request)
        if self.fail_with is not None:
            context.abort(self.fail_with, "retrieval is down for this test")
        return retrieval_pb2.SearchResponse(passages=self.passages)


@dataclass
class Events:
    published: list[events_pb2.InteractionEvent] = field(default_factory=list)

    def publish(self, event: events_pb2.InteractionEvent) -> None:
        self.published.append(event)


class Recorded:
    """A real engine that keeps every prompt it was given; ``name`` serves it under another model name."""

    def __init__(self, engine: Engine, name: str = "") -> None:
        self._engine = engine
        self.model_name = name or engine.model_name
        self.context_tokens = engine.context_tokens
        self.calls: list[list[ChatMessage]] = []

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return self._engine.count_tokens_many(texts)

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        self.calls.append(list(messages))
        return self._engine.stream_chat(messages, params)
