"""An answer the caller cancels over gRPC mid-stream is still published for the monitor.

Real parts: the generation gRPC server with a real token, retrieval over gRPC, the event as published. The
model is a stand-in that writes slowly, so that the cancel lands mid-answer (no real model can be timed to
that on a shared CPU).
"""

from __future__ import annotations

import time

import grpc

from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.settings import AuthSettings
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.engine import EngineCatalog
from services.generation.retrieval_client import GrpcPassageSource
from tests.integration.generation_standins import (
    Events,
    RecordingRetrieval,
    ScriptedEngine,
    serve_generation,
    serve_retrieval,
)

PASSAGE = common_pb2.Passage(
    chunk_id="c1", document_id="d1", title="Budget memo", uri="finance/memo.md", text="Travel: 412,000 USD.",
    score=0.9,
)  # fmt: skip
WORDS = ["The", " travel", " budget", " is", " 412,000", " USD", " [1]."]


def test_a_cancelled_answer_is_published_with_what_was_sent(
    auth_settings: AuthSettings, issuer: DevIssuer
) -> None:
    retrieval_server, retrieval_target = serve_retrieval(RecordingRetrieval(passages=[PASSAGE]))
    events = Events()
    answerer = Answerer(
        GrpcPassageSource(retrieval_target),
        EngineCatalog({"slow": ScriptedEngine(WORDS, "slow", pause_s=0.5)}, "slow"),
        events,
        AnswerPolicy(),
        b"test-key",
    )
    server = serve_generation(answerer, auth_settings)
    try:
        stub = generation_pb2_grpc.GenerationServiceStub(open_channel(f"127.0.0.1:{server.port}"))
        call = stub.Answer(
            generation_pb2.AnswerRequest(question="What is the travel budget?"),
            metadata=bearer(issuer.mint("alice")),
            timeout=60,
        )
        received = [next(call).delta, next(call).delta]
        call.cancel()
        try:
            list(call)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.CANCELLED
        deadline = time.monotonic() + 10
        while not events.published and time.monotonic() < deadline:
            time.sleep(0.05)
        (event,) = events.published
        assert event.interrupted and event.question == "What is the travel budget?"
        # What the caller was sent, and perhaps the word the server had in hand when the cancel arrived.
        assert event.answer.startswith("".join(received).strip()) and len(event.answer) < len("".join(WORDS))
        assert [p.chunk_id for p in event.passages] == ["c1"]
    finally:
        server.stop(0)
        retrieval_server.stop(0)
