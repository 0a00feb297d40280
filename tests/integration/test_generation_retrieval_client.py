"""Generation's retrieval client against a real gRPC server on loopback.

The server runs a recording RetrievalService (a test double: the real one is tested in
test_retrieval_grpc.py); these tests check what the client sends (the caller's own token, the audience
unchanged) and how it reports the server's errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest

from copilot.common.v1 import common_pb2
from copilot.errors import DependencyUnavailable, InvalidInput, PermissionDenied
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.generation.retrieval_client import GrpcPassageSource
from tests.conftest import free_port

PASSAGE = common_pb2.Passage(chunk_id="vacation#0", title="Vacation policy", text="25 days.", score=0.8)


@dataclass
class RecordingRetrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    requests: list[tuple[retrieval_pb2.SearchRequest, str]] = field(default_factory=list)
    fail_with: grpc.StatusCode | None = None

    def Search(  # noqa: N802
        self, request: retrieval_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> retrieval_pb2.SearchResponse:
        self.requests.append((request, dict(context.invocation_metadata())["authorization"]))
        if self.fail_with is not None:
            context.abort(self.fail_with, "told to fail")
        return retrieval_pb2.SearchResponse(passages=[PASSAGE])


@pytest.fixture
def retrieval() -> Iterator[tuple[RecordingRetrieval, str]]:
    servicer = RecordingRetrieval()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


def test_the_audience_and_the_callers_token_go_through_unchanged(
    retrieval: tuple[RecordingRetrieval, str],
) -> None:
    servicer, target = retrieval
    audience = [
        common_pb2.Audience(acl_entries=["user:bob", "group:engineering", "everyone"]),
        common_pb2.Audience(acl_entries=["user:carol", "group:legal"]),
    ]
    source = GrpcPassageSource(target)

    passages = source.search("alice-token", "vacation days", 3, audience)

    assert [p.chunk_id for p in passages] == ["vacation#0"]
    ((request, authorization),) = servicer.requests
    assert authorization == "Bearer alice-token"
    assert (request.query, request.top_k) == ("vacation days", 3)
    assert list(request.audience) == audience
    source.close()


def test_no_audience_sends_none(retrieval: tuple[RecordingRetrieval, str]) -> None:
    servicer, target = retrieval
    GrpcPassageSource(target).search("alice-token", "vacation days", 3)

    assert list(servicer.requests[0][0].audience) == []


def test_uri_prefixes_become_the_searchs_filter(retrieval: tuple[RecordingRetrieval, str]) -> None:
    servicer, target = retrieval
    GrpcPassageSource(target).search("alice-token", "budget", 3, (), ["/docs/finance", "/wiki"])

    assert list(servicer.requests[0][0].filters.uri_prefixes) == ["/docs/finance", "/wiki"]


def test_answers_ask_for_a_few_passages_per_document(retrieval: tuple[RecordingRetrieval, str]) -> None:
    servicer, target = retrieval
    GrpcPassageSource(target).search("alice-token", "budget", 5)
    GrpcPassageSource(target, passages_per_document=1).search("alice-token", "budget", 5)

    assert [r.max_per_document for r, _ in servicer.requests] == [3, 1]


def test_ranking_options_reach_the_search_only_when_asked_for(
    retrieval: tuple[RecordingRetrieval, str],
) -> None:
    servicer, target = retrieval
    source = GrpcPassageSource(target)
    source.search("alice-token", "budget", 5)
    source.search("alice-token", "budget", 5, mode=retrieval_pb2.SEARCH_MODE_DENSE, rerank=True)

    assert [(r.mode, r.rerank) for r, _ in servicer.requests] == [
        (retrieval_pb2.SEARCH_MODE_UNSPECIFIED, False),
        (retrieval_pb2.SEARCH_MODE_DENSE, True),
    ]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInput),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.INTERNAL, DependencyUnavailable),
    ],
)
def test_retrieval_errors_become_domain_errors(
    retrieval: tuple[RecordingRetrieval, str], code: grpc.StatusCode, error: type[Exception]
) -> None:
    servicer, target = retrieval
    servicer.fail_with = code

    with pytest.raises(error):
        GrpcPassageSource(target).search("alice-token", "vacation days", 3)


def test_retrieval_that_is_not_there_is_unavailable() -> None:
    source = GrpcPassageSource(f"127.0.0.1:{free_port()}", timeout_s=2)

    with pytest.raises(DependencyUnavailable, match="retrieval at 127.0.0.1"):
        source.search("alice-token", "vacation days", 3)
