"""What a variant changes per request or per server reaches the right place: an AnswerRequest's search_mode
and rerank reach retrieval's SearchRequest (also when `copilot eval` asks for a variant), and a prompt
variant's rules file is what the model is given.

Real parts: the generation gRPC service with real signed tokens, generation's gRPC retrieval client, the
SmolLM2-135M engine (llama.cpp, in-process). One double: the retrieval service is a recording servicer on
a real gRPC server (the real one is tested in test_retrieval_grpc.py), so the test can see what generation
asks it for. ``Recorded`` is not a double: it passes every call to the real engine and keeps the messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from copilot.devissuer import DevIssuer
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.retrieval.v1 import retrieval_pb2
from copilot.settings import AuthSettings
from services.evaluation.client import CopilotApi, Endpoints, Tokens, load_credentials
from services.evaluation.runner import AnswerCache
from services.evaluation.settings import EvalSettings
from services.evaluation.variants import Variant
from services.generation.agent import Agent
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.engine import (
    EngineCatalog,
    build_engine,
)
from services.generation.prompt import SYSTEM_RULES, load_system_rules
from services.generation.retrieval_client import GrpcPassageSource
from services.generation.tools import Toolbox
from services.generation.tools.documents import SearchDocuments
from tests.conftest import REPO, SAMPLE_USERS
from tests.integration.generation_standins import (
    VACATION,
    Events,
    Recorded,
    RecordingRetrieval,
    serve_generation,
    serve_retrieval,
)

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
PROMPT_VARIANT = REPO / "sample" / "eval" / "prompts" / "cite-every-sentence.txt"


@dataclass
class Service:
    stub: generation_pb2_grpc.GenerationServiceStub
    retrieval: RecordingRetrieval
    engine: Recorded
    target: str
    retrieval_target: str


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, auth_settings: AuthSettings) -> Iterator[Service]:
    retrieval = RecordingRetrieval(passages=[])
    retrieval_server, retrieval_target = serve_retrieval(retrieval)

    engine = Recorded(build_engine("llama_cpp", MODEL, tmp_path_factory.mktemp("models"), 2, 2048))
    source = GrpcPassageSource(retrieval_target)
    # As the server builds it when COPILOT_GENERATION_SYSTEM_RULES_FILE names the sample prompt variant.
    policy = AnswerPolicy(max_answer_tokens=24, system_rules=load_system_rules(PROMPT_VARIANT))
    answerer = Answerer(
        source,
        EngineCatalog({MODEL: engine}, MODEL),
        Events(),
        policy,
        b"test-key",
        agent=Agent(Toolbox([SearchDocuments(source, 4, 0.45)]), max_steps=1),
    )
    server = serve_generation(answerer, auth_settings)
    target = f"127.0.0.1:{server.port}"
    yield Service(
        generation_pb2_grpc.GenerationServiceStub(open_channel(target)),
        retrieval,
        engine,
        target,
        retrieval_target,
    )
    server.stop(1)
    source.close()
    retrieval_server.stop(0)


@pytest.fixture(autouse=True)
def fresh(service: Service) -> None:
    service.retrieval.passages = []
    service.retrieval.requests.clear()
    service.engine.calls.clear()


def answer(service: Service, issuer: DevIssuer, **request: object) -> generation_pb2.AnswerFinal:
    responses = list(
        service.stub.Answer(
            generation_pb2.AnswerRequest(**request),  # type: ignore[arg-type]
            metadata=bearer(issuer.mint("alice")),
            timeout=120,
        )
    )
    assert responses[-1].HasField("final")
    return responses[-1].final


def test_search_mode_and_rerank_of_the_answer_request_reach_retrieval(
    service: Service, issuer: DevIssuer
) -> None:
    # No passages: each answer is a refusal, so the model is not asked and the test stays quick.
    answer(service, issuer, question="What is the travel budget?")
    answer(
        service,
        issuer,
        question="What is the travel budget?",
        search_mode=retrieval_pb2.SEARCH_MODE_DENSE,
        rerank=True,
    )
    answer(service, issuer, question="What is the travel budget?", rerank=True)

    assert [(r.mode, r.rerank) for r in service.retrieval.requests] == [
        (retrieval_pb2.SEARCH_MODE_UNSPECIFIED, False),
        (retrieval_pb2.SEARCH_MODE_DENSE, True),
        (retrieval_pb2.SEARCH_MODE_UNSPECIFIED, True),
    ]


def test_ranking_options_with_tools_are_invalid_argument(service: Service, issuer: DevIssuer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        answer(service, issuer, question="What is the travel budget?", use_tools=True, rerank=True)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "with use_tools the tools search" in caught.value.details()
    assert service.retrieval.requests == []


def test_the_prompt_variants_rules_are_what_the_model_is_given(service: Service, issuer: DevIssuer) -> None:
    service.retrieval.passages = [VACATION]

    answer(service, issuer, question="How many vacation days do I get?")

    (call,) = service.engine.calls
    assert call[0].role == "system"
    assert call[0].content == PROMPT_VARIANT.read_text(encoding="utf-8").strip()
    assert call[0].content != SYSTEM_RULES


def test_an_evaluation_variants_search_settings_reach_the_answers_search(
    service: Service, issuer: DevIssuer
) -> None:
    """`copilot eval` signs in with the password grant and asks through the public API, as it does
    against a stack; only an identical answer request is asked once and shared."""
    endpoints = Endpoints(
        retrieval=service.retrieval_target,
        generation=service.target,
        monitor="",
        ingest="",
        issuer=issuer.issuer,
        credentials_file=SAMPLE_USERS,
    )
    tokens = Tokens(issuer.issuer, load_credentials(SAMPLE_USERS), "copilot-cli")
    api = CopilotApi(endpoints, tokens, EvalSettings())
    cache = AnswerCache()
    question = "What is the travel budget?"
    variants = [
        Variant(),
        Variant(search_mode="hybrid", rerank=True),
        Variant(search_mode="dense"),
        Variant(description="the defaults under another name"),
    ]

    reused = [cache.get(api, "alice", question, v)[1] for v in variants]

    assert reused == [False, False, False, True]
    assert [(r.mode, r.rerank) for r in service.retrieval.requests] == [
        (retrieval_pb2.SEARCH_MODE_UNSPECIFIED, False),
        (retrieval_pb2.SEARCH_MODE_HYBRID, True),
        (retrieval_pb2.SEARCH_MODE_DENSE, False),
    ]
