"""The generation service end to end on loopback: a real gRPC server with real signed tokens, two models
in Ray Serve (SmolLM2-135M, the default, for wiring; Qwen2.5-Coder-1.5B where an answer must be right),
the agent's tools over the sample sales database, and a replica killed mid-answer.

One double: the retrieval service is a recording servicer on a real gRPC server (the real one is tested
in test_retrieval_grpc.py), so these tests can see what generation sends it and make it fail.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import ray
from grpc_health.v1 import health_pb2, health_pb2_grpc

from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.embedding import MiniLmEmbedder
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.settings import AuthSettings
from sample.build_sales_db import EXAMPLES, build
from services.generation.agent import Agent
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.deployment import RayServeEngine, app_name, start_engines
from services.generation.engine import EngineCatalog
from services.generation.retrieval_client import GrpcPassageSource
from services.generation.server import EngineHealthWatch
from services.generation.tools import Toolbox
from services.generation.tools.database import QueryDatabase, ReadOnlyDatabase, load_examples
from services.generation.tools.documents import SearchDocuments
from services.generation.verification import CitationVerifier
from tests.integration.generation_standins import (
    VACATION,
    Events,
    RecordingRetrieval,
    serve_generation,
    serve_retrieval,
)

pytestmark = pytest.mark.slow

SMALL, GOOD = "smollm2-135m", "qwen2.5-coder-1.5b"


@dataclass
class Service:
    stub: generation_pb2_grpc.GenerationServiceStub
    health: health_pb2_grpc.HealthStub
    retrieval: RecordingRetrieval
    engines: dict[str, RayServeEngine]


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, auth_settings: AuthSettings, model_cache_dir: Path
) -> Iterator[Service]:
    retrieval = RecordingRetrieval()
    retrieval_server, retrieval_target = serve_retrieval(retrieval)

    # Ray puts Unix sockets under its directory: keep the path short.
    ray_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    engines = start_engines("llama_cpp", [SMALL, GOOD], model_cache_dir, 2, 4096, ray_temp_dir=ray_dir)
    embedder = MiniLmEmbedder()
    source = GrpcPassageSource(retrieval_target)
    database = ReadOnlyDatabase(f"sqlite:///{build(tmp_path_factory.mktemp('db') / 'sales.db')}", 10, 50)
    toolbox = Toolbox(
        [
            SearchDocuments(source, 4, 0.45),
            QueryDatabase(
                database,
                embedder,
                ["group:finance"],
                "acme",
                "sales: customers, products and orders with their amounts, dates and status",
                load_examples(EXAMPLES, "sqlite"),
            ),
        ]
    )
    answerer = Answerer(
        source,
        EngineCatalog(engines, SMALL),
        Events(),
        AnswerPolicy(max_answer_tokens=200),
        b"test-key",
        verifier=CitationVerifier(embedder),
        agent=Agent(toolbox, max_steps=3),
    )
    server = serve_generation(answerer, auth_settings)
    watch = EngineHealthWatch(list(engines.values()), server.set_serving, period_s=0.5)
    watch.start()
    channel = open_channel(f"127.0.0.1:{server.port}")
    yield Service(
        generation_pb2_grpc.GenerationServiceStub(channel),
        health_pb2_grpc.HealthStub(channel),
        retrieval,
        engines,
    )
    watch.stop()
    server.stop(1)
    next(iter(engines.values())).shutdown()
    retrieval_server.stop(0)
    database.close()
    shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def retrieval_answers(service: Service) -> None:
    service.retrieval.passages = [VACATION]
    service.retrieval.fail_with = None
    service.retrieval.requests.clear()


def answer(
    service: Service, issuer: DevIssuer, user: str, **request: object
) -> tuple[list[generation_pb2.AnswerResponse], generation_pb2.AnswerFinal]:
    responses = list(
        service.stub.Answer(
            generation_pb2.AnswerRequest(**request),  # type: ignore[arg-type]
            metadata=bearer(issuer.mint(user)),
            timeout=600,
        )
    )
    assert responses[-1].HasField("final")
    return responses[:-1], responses[-1].final


def serving(service: Service) -> int:
    return service.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def test_the_default_model_answers_unless_the_request_names_another(
    service: Service, issuer: DevIssuer
) -> None:
    service.retrieval.passages = []  # a refusal: the model is picked, and no time is spent generating

    _, default = answer(service, issuer, "alice", question="What is the travel budget?")
    _, picked = answer(service, issuer, "alice", question="What is the travel budget?", model=GOOD)

    assert (default.model, picked.model) == (SMALL, GOOD)
    assert default.refused and picked.refused


def test_an_unknown_model_is_invalid_argument_naming_the_models(service: Service, issuer: DevIssuer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        answer(service, issuer, "alice", question="What is the travel budget?", model="gpt-9")

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == f"unknown model 'gpt-9'; this server has {SMALL}, {GOOD}"


def test_the_audience_reaches_retrieval_with_the_callers_question(
    service: Service, issuer: DevIssuer
) -> None:
    service.retrieval.passages = []
    audience = [common_pb2.Audience(acl_entries=["user:bob", "group:engineering", "everyone"])]

    answer(service, issuer, "alice", question="What is the travel budget?", audience=audience)

    (request,) = service.retrieval.requests
    assert list(request.audience) == audience
    assert request.query == "What is the travel budget?"


def test_when_every_tool_fails_the_caller_sees_the_calls_and_why(service: Service, issuer: DevIssuer) -> None:
    service.retrieval.fail_with = grpc.StatusCode.UNAVAILABLE
    seen: list[generation_pb2.AnswerResponse] = []

    with pytest.raises(grpc.RpcError) as caught:
        for response in service.stub.Answer(
            generation_pb2.AnswerRequest(question="How many vacation days do I get?", use_tools=True),
            metadata=bearer(issuer.mint("bob")),  # bob may not query the database: search is all he has
            timeout=300,
        ):
            seen.append(response)

    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details().startswith("the tools could not find an answer: search_documents:")
    assert "document search is unavailable" in caught.value.details()
    assert seen and all(r.HasField("tool_call") and r.tool_call.failed for r in seen)
    assert seen[0].tool_call.name == "search_documents"


def test_the_agent_answers_a_data_question_from_the_database(service: Service, issuer: DevIssuer) -> None:
    """The one test that needs a good model: Qwen2.5-Coder-1.5B picks the tool, writes the SQL, answers."""
    responses, final = answer(
        service,
        issuer,
        "alice",
        question="How many customers do we have in Germany?",
        use_tools=True,
        model=GOOD,
    )

    calls = [r.tool_call for r in responses if r.HasField("tool_call")]
    database_calls = [c for c in calls if c.name == "query_database" and not c.failed]
    assert database_calls, calls
    assert "germany" in database_calls[0].result.lower()
    assert "5" in final.answer  # the sample database has five customers in Germany
    assert any(c.passage.document_id == "database" for c in final.citations), final.answer
    assert "".join(r.delta for r in responses) == final.answer or final.answer in "".join(
        r.delta for r in responses
    )


def test_an_engine_that_dies_mid_answer_ends_the_stream_with_unavailable(
    service: Service, issuer: DevIssuer
) -> None:
    assert serving(service) == health_pb2.HealthCheckResponse.SERVING
    stream = service.stub.Answer(
        generation_pb2.AnswerRequest(question="Tell me everything about the vacation policy."),
        metadata=bearer(issuer.mint("alice")),
        timeout=300,
    )
    first = next(stream)
    assert first.delta
    replica = next(
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{app_name(SMALL)}#")
    )
    ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)

    with pytest.raises(grpc.RpcError) as caught:
        for _ in stream:
            pass

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details().startswith(f"model {SMALL}")
    assert "retry shortly" in caught.value.details()
    # Health turns NOT_SERVING while Serve replaces the replica, then SERVING again.
    assert _eventually(lambda: serving(service) == health_pb2.HealthCheckResponse.NOT_SERVING, 30)
    assert _eventually(lambda: serving(service) == health_pb2.HealthCheckResponse.SERVING, 120)
    _, after = answer(service, issuer, "alice", question="How many vacation days do I get?")
    assert after.answer


def _eventually(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False
