"""A sentence that cites the wrong source, from the answer to the monitor's flag: the real generation
servicer on a real gRPC server with a real signed token, retrieval over gRPC, the real citation check
(all-MiniLM-L6-v2), and the published event through the monitor's groundedness detector.

One stand-in: the model. No real model can be made to cite the wrong passage on demand, so a
``ScriptedEngine`` writes a fixed answer; the models themselves are exercised in test_answerer.py and
test_generation_grpc.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.embedding import MiniLmEmbedder
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.settings import AuthSettings
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.engine import EngineCatalog
from services.generation.retrieval_client import GrpcPassageSource
from services.generation.verification import CitationVerifier
from services.monitor.detectors import Severity, UngroundedDetector
from tests.integration.generation_standins import (
    Events,
    RecordingRetrieval,
    ScriptedEngine,
    serve_generation,
    serve_retrieval,
)

ALLOWANCE = common_pb2.Passage(
    chunk_id="vacation#0",
    document_id="vacation",
    title="Vacation policy",
    heading_path=["Vacation policy", "Annual vacation allowance"],
    text="Full-time employees receive 25 days of paid vacation per calendar year.",
    score=0.8,
)
CARRY_OVER = common_pb2.Passage(
    chunk_id="vacation#1",
    document_id="vacation",
    title="Vacation policy",
    heading_path=["Vacation policy", "Carry-over"],
    text="Up to 5 unused vacation days can be carried over into the next calendar year. "
    "Carried-over days expire on 31 March.",
    score=0.7,
)
# The allowance cited for the carry-over rule; a claim no source makes; the allowance cited rightly.
ANSWER = (
    "Up to 5 unused vacation days can be carried over into the next calendar year [1]. "
    "Unused days are donated to charity [2]. "
    "Full-time employees receive 25 days of paid vacation [1]."
)


@dataclass
class Stack:
    stub: generation_pb2_grpc.GenerationServiceStub
    events: Events


@pytest.fixture(scope="module")
def stack(auth_settings: AuthSettings) -> Iterator[Stack]:
    retrieval = RecordingRetrieval(passages=[ALLOWANCE, CARRY_OVER])
    retrieval_server, retrieval_target = serve_retrieval(retrieval)
    events = Events()
    answerer = Answerer(
        GrpcPassageSource(retrieval_target),
        EngineCatalog({"scripted": ScriptedEngine([ANSWER])}, "scripted"),
        events,
        AnswerPolicy(),
        b"test-key",
        verifier=CitationVerifier(MiniLmEmbedder()),
    )
    server = serve_generation(answerer, auth_settings)
    yield Stack(generation_pb2_grpc.GenerationServiceStub(open_channel(f"127.0.0.1:{server.port}")), events)
    server.stop(1)
    retrieval_server.stop(0)


def test_a_wrong_citation_names_the_source_that_supports_the_sentence_and_is_flagged_as_such(
    stack: Stack, issuer: DevIssuer
) -> None:
    responses = list(
        stack.stub.Answer(
            generation_pb2.AnswerRequest(question="Can I carry vacation days over?"),
            metadata=bearer(issuer.mint("alice")),
            timeout=60,
        )
    )
    final = responses[-1].final

    assert [(s.verdict, [c.number for c in s.supported_by]) for s in final.sentences] == [
        (generation_pb2.SUPPORT_VERDICT_UNSUPPORTED, [2]),
        (generation_pb2.SUPPORT_VERDICT_UNSUPPORTED, []),
        (generation_pb2.SUPPORT_VERDICT_SUPPORTED, []),
    ]
    # The supporting source comes whole, although the answer never cites it: a client can show it.
    assert [c.number for c in final.citations] == [1, 2]
    assert final.sentences[0].supported_by[0].passage.heading_path == ["Vacation policy", "Carry-over"]

    (event,) = stack.events.published
    assert [list(s.supported_by) for s in event.sentences] == [[2], [], []]
    findings = UngroundedDetector().inspect(event)
    assert [(f.severity, f.reason) for f in findings] == [
        (Severity.MEDIUM, "1 sentence(s) not supported by the sources they cite"),
        (Severity.LOW, "1 sentence(s) cite the wrong source: another given source supports them"),
    ]
    assert event.sentences[1].text in findings[0].evidence[0]
    assert event.sentences[0].text in findings[1].evidence[0]
