"""Stand-ins the generation tests share: a retrieval server that records what it was asked, an event sink,
and an engine wrapper that records the prompts it was given. The engine underneath and the gRPC servers
are real."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from copilot.auth import TokenVerifier
from copilot.common.v1 import common_pb2
from copilot.events.v1 import events_pb2
from copilot.generation.v1 import generation_pb2_grpc
from copilot.grpc_server import GrpcServer
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from copilot.settings import AuthSettings
from services.generation.answerer import Answerer
from services.generation.engine import ChatMessage, Engine, GenerationParams, TokenDelta
from services.generation.service import GenerationServicer
from services.generation.settings import GenerationSettings

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


class ScriptedEngine:
    """A model stand-in that writes ``pieces`` in turn, ``pause_s`` apart, whatever it is asked."""

    context_tokens = 4096

    def __init__(self, pieces: Sequence[str], model_name: str = "scripted", pause_s: float = 0.0) -> None:
        self.model_name = model_name
        self._pieces = list(pieces)
        self._pause_s = pause_s

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        for n, piece in enumerate(self._pieces, start=1):
            yield TokenDelta(piece, 10, n, n == len(self._pieces))
            time.sleep(self._pause_s)


def serve_retrieval(retrieval: RecordingRetrieval) -> tuple[grpc.Server, str]:
    """The recording servicer on a real gRPC server on loopback, and its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(retrieval, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def serve_generation(answerer: Answerer, auth_settings: AuthSettings) -> GrpcServer:
    """The generation servicer on the real gRPC server (token check, health, reflection) on a free port."""
    server = GrpcServer(
        "generation", GenerationSettings(port=0, auth=auth_settings), TokenVerifier(auth_settings)
    )
    slot = server.add_service(
        generation_pb2_grpc.add_GenerationServiceServicer_to_server, "copilot.generation.v1.GenerationService"
    )
    server.start()
    slot.fill(GenerationServicer(answerer))
    return server
