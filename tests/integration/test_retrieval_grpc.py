"""The retrieval service through a real gRPC server, real signed tokens and Qdrant's engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from copilot.auth import Principal, TokenVerifier
from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.embedding import MiniLmEmbedder
from copilot.errors import FailedPrecondition
from copilot.grpc_client import bearer, open_channel
from copilot.grpc_server import GrpcServer
from copilot.lexical import encode_document
from copilot.reranker import OnnxCrossEncoder
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from copilot.settings import AuthSettings
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.port import StoredChunk, point_id_for, uri_ancestors
from services.retrieval.explain import AccessExplainer
from services.retrieval.search import Mode, Searcher, SearchOptions
from services.retrieval.service import RetrievalServicer
from services.retrieval.settings import RetrievalSettings

DOCS = [
    (
        "budget",
        "Q3 budget memo",
        "The Q3 2026 travel budget is 412,000 USD, down 8% from Q2.",
        ["group:finance"],
    ),
    (
        "failover",
        "Database failover runbook",
        "Promote the replica with pg_ctl promote during failover.",
        ["group:engineering"],
    ),
    ("vacation", "Vacation policy", "Employees receive 25 days of paid annual leave.", ["everyone"]),
]


# One long document whose chunks all match a query better than anything else carol may read.
HANDBOOK = [
    "Legal records are retained for seven years after a matter closes.",
    "Retention of legal records: seven years from the close of the matter.",
    "Closed matters keep their legal records for seven years, then they are destroyed.",
    "Legal hold suspends the seven-year retention of records for a matter.",
    "Legal records retention is seven years; contracts are kept for ten.",
    "Records of a closed legal matter are retained seven years.",
]
HANDBOOK_QUERY = "How long are legal records retained?"


def _chunk(
    doc_id: str, index: int, title: str, text: str, vector: list[float], acl: list[str]
) -> StoredChunk:
    uri = f"/docs/{doc_id}.md"
    return StoredChunk(
        point_id_for(doc_id, index),
        vector,
        {
            "document_id": doc_id,
            "chunk_index": index,
            "uri": uri,
            "uri_ancestors": uri_ancestors(uri),
            "doc_type": "markdown" if doc_id != "failover" else "html",
            "modified_at": MODIFIED.get(doc_id, 1_000.0),
            "title": title,
            "text": text,
            "heading_path": [title],
            "page": 0,
            # Chunks far apart in their document: neighbours by index, but not contiguous text to merge.
            "char_start": index * 1000,
            "char_end": index * 1000 + len(text),
            "tenant": "acme",
            "acl": acl,
            "classification": "internal",
            "fingerprint": "f",
            "suspicion": ["instruction_override"] if doc_id == "vacation" else [],
        },
        encode_document(f"{title}\n\n{text}"),
    )


# When each document last changed, in seconds since the epoch.
MODIFIED = {"budget": 3_000.0, "failover": 2_000.0}


@pytest.fixture(scope="module")
def embedder() -> MiniLmEmbedder:
    return MiniLmEmbedder()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, embedder: MiniLmEmbedder) -> Iterator[EdgeChunkStore]:
    store = EdgeChunkStore(Path(tmp_path_factory.mktemp("edge")), embedder.dimension)
    vectors = embedder.embed([text for _, _, text, _ in DOCS])
    for (doc_id, title, text, acl), vector in zip(DOCS, vectors, strict=True):
        store.replace_document(doc_id, [_chunk(doc_id, 0, title, text, vector, acl)])
    handbook = [
        _chunk("handbook", i, "Legal handbook", text, vector, ["group:legal"])
        for i, (text, vector) in enumerate(zip(HANDBOOK, embedder.embed(HANDBOOK), strict=True))
    ]
    store.replace_document("handbook", handbook)
    yield store
    store.close()


@pytest.fixture(scope="module")
def retrieval(auth_settings: AuthSettings, store: EdgeChunkStore, embedder: MiniLmEmbedder) -> Iterator[str]:
    settings = RetrievalSettings(port=0, auth=auth_settings, role_groups={"auditor": ["finance"]})
    server = GrpcServer("retrieval", settings, TokenVerifier(auth_settings))
    slot = server.add_service(
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server, "copilot.retrieval.v1.RetrievalService"
    )
    server.start()
    searcher = Searcher(
        store,
        embedder,
        settings.default_top_k,
        settings.max_top_k,
        settings.max_query_chars,
        role_groups=settings.role_groups,
        max_chunks_per_document=settings.max_chunks_per_document,
        reranker=OnnxCrossEncoder(),
    )
    explainer = AccessExplainer(store, role_groups=settings.role_groups, auditor_role=settings.auditor_role)
    slot.fill(RetrievalServicer(searcher, explainer))
    server.set_serving(True)
    yield f"127.0.0.1:{server.port}"
    server.stop(1)


def _search(
    target: str, token: str | None, query: str, top_k: int = 5, **fields: object
) -> retrieval_pb2.SearchResponse:
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target))
    return stub.Search(
        retrieval_pb2.SearchRequest(query=query, top_k=top_k, **fields),  # type: ignore[arg-type]
        metadata=bearer(token) if token else None,
        timeout=30,
    )


def test_caller_sees_only_what_their_groups_allow(retrieval: str, issuer: DevIssuer) -> None:
    alice = _search(retrieval, issuer.mint("alice"), "What is the Q3 travel budget?")
    assert [p.document_id for p in alice.passages][0] == "budget"
    assert alice.passages[0].access_reason == "group:finance"
    assert {p.document_id for p in alice.passages} == {"budget", "vacation"}
    bob = _search(retrieval, issuer.mint("bob"), "What is the Q3 travel budget?")
    assert "budget" not in {p.document_id for p in bob.passages}
    assert {p.document_id for p in bob.passages} == {"failover", "vacation"}


def test_a_mapped_role_reads_as_its_groups(retrieval: str, issuer: DevIssuer) -> None:
    token = issuer.mint("carol", realm_access={"roles": ["copilot-user", "auditor"]})
    reply = _search(retrieval, token, "What is the Q3 travel budget?")
    assert reply.passages[0].document_id == "budget"
    assert reply.passages[0].access_reason == "group:finance"


def test_an_admin_role_reads_nothing_more(retrieval: str, issuer: DevIssuer) -> None:
    plain = _search(retrieval, issuer.mint("bob"), "What is the Q3 travel budget?")
    token = issuer.mint("bob", realm_access={"roles": ["copilot-user", "copilot-admin", "admin"]})
    admin = _search(retrieval, token, "What is the Q3 travel budget?")
    assert [p.chunk_id for p in admin.passages] == [p.chunk_id for p in plain.passages]
    assert "budget" not in {p.document_id for p in admin.passages}


@pytest.mark.parametrize(("max_per_document", "handbook"), [(0, 1), (3, 3), (-1, 6)])
def test_one_document_fills_at_most_the_cap_of_the_top_k(
    retrieval: str,
    issuer: DevIssuer,
    store: EdgeChunkStore,
    embedder: MiniLmEmbedder,
    max_per_document: int,
    handbook: int,
) -> None:
    [vector] = embedder.embed([HANDBOOK_QUERY])
    uncapped = store.query(vector, "acme", ["group:legal", "user:carol", "everyone"], 5)
    assert sum(c.payload["document_id"] == "handbook" for c in uncapped) > 3, "the cap must have work to do"

    reply = _search(
        retrieval, issuer.mint("carol"), HANDBOOK_QUERY, top_k=8, max_per_document=max_per_document
    )
    documents = [p.document_id for p in reply.passages]
    assert documents[0] == "handbook"
    # 0 is the server default (one passage per document); negative lifts the cap.
    assert documents.count("handbook") == handbook
    # Carol may read one other chunk; the over-fetch brings it in whatever the cap.
    assert documents.count("vacation") == 1


def test_other_tenant_sees_nothing(retrieval: str, issuer: DevIssuer) -> None:
    reply = _search(retrieval, issuer.mint("alice", tenant="globex"), "vacation days")
    assert list(reply.passages) == []


@pytest.mark.parametrize("token_kind", ["missing", "expired", "wrong_audience", "garbage"])
def test_bad_tokens_get_unauthenticated(retrieval: str, issuer: DevIssuer, token_kind: str) -> None:
    token = {
        "missing": None,
        "expired": issuer.mint("alice", exp=1),
        "wrong_audience": issuer.mint("alice", aud="someone-else"),
        "garbage": "abc.def.ghi",
    }[token_kind]
    with pytest.raises(grpc.RpcError) as info:
        _search(retrieval, token, "vacation")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.details()


@pytest.mark.parametrize(
    ("query", "top_k", "message"), [("   ", 5, "empty"), ("x" * 3000, 5, "limit"), ("ok", 500, "top_k")]
)
def test_bad_requests_get_invalid_argument(
    retrieval: str, issuer: DevIssuer, query: str, top_k: int, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _search(retrieval, issuer.mint("alice"), query, top_k)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def test_health_and_reflection_need_no_token(retrieval: str) -> None:
    channel = grpc.insecure_channel(retrieval)
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "copilot.retrieval.v1.RetrievalService" in names


def test_trace_context_crosses_the_grpc_hop(
    retrieval: str, issuer: DevIssuer, span_exporter: InMemorySpanExporter
) -> None:
    with trace.get_tracer("client").start_as_current_span("client-call") as span:
        client_trace = span.get_span_context().trace_id
        _search(retrieval, issuer.mint("alice"), "vacation days")
    server_spans = [s for s in span_exporter.get_finished_spans() if s.name.endswith("/Search")]
    assert server_spans, "the server should record a span for the call"
    assert server_spans[-1].context.trace_id == client_trace
    assert server_spans[-1].parent is not None


def _documents(reply: retrieval_pb2.SearchResponse) -> list[str]:
    return [p.document_id for p in reply.passages]


@pytest.mark.parametrize(
    "mode",
    [retrieval_pb2.SEARCH_MODE_DENSE, retrieval_pb2.SEARCH_MODE_SPARSE, retrieval_pb2.SEARCH_MODE_HYBRID],
)
def test_every_ranking_mode_finds_the_answer_and_keeps_cosine_scores(
    retrieval: str, issuer: DevIssuer, mode: int
) -> None:
    reply = _search(retrieval, issuer.mint("bob"), "pg_ctl promote the replica", mode=mode)

    assert _documents(reply)[0] == "failover"
    # Whatever the ranking, the score stays the passage's cosine similarity to the query.
    assert 0.3 < reply.passages[0].score <= 1.0


def test_lexical_mode_with_only_stopwords_finds_nothing(retrieval: str, issuer: DevIssuer) -> None:
    reply = _search(retrieval, issuer.mint("bob"), "what is the", mode=retrieval_pb2.SEARCH_MODE_SPARSE)
    assert list(reply.passages) == []


def test_reranking_reorders_candidates_with_the_cross_encoder(retrieval: str, issuer: DevIssuer) -> None:
    reply = _search(
        retrieval, issuer.mint("alice"), "How many days of paid leave do employees get?", rerank=True
    )

    assert _documents(reply)[0] == "vacation"
    assert "budget" in _documents(reply)


class _MarkerReranker:
    """Stands in for the cross-encoder, to pin down what reaches it: it prefers passages naming the marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.seen: list[str] = []

    def score(self, query: str, passages: list[str]) -> list[float]:
        self.seen = list(passages)
        return [10.0 if self.marker in p else 5.0 if "Cafeteria" in p else -10.0 for p in passages]


def test_reranking_judges_every_passage_of_a_document_before_the_cap(
    tmp_path: Path, embedder: MiniLmEmbedder
) -> None:
    query = "How do I defer constraint checks until commit?"
    close, related, unrelated = embedder.embed([query, "constraint timing in transactions", "lunch menu"])
    store = EdgeChunkStore(tmp_path / "shard", embedder.dimension)
    everyone = ["everyone"]
    # The manual's synopsis chunk is nearest to the question; its answering chunk, far down the page, is not.
    store.replace_document(
        "manual",
        [
            _chunk("manual", 0, "SET CONSTRAINTS", "SET CONSTRAINTS synopsis", close, everyone),
            _chunk("manual", 5, "SET CONSTRAINTS", "DEFERRED checks wait until commit", related, everyone),
        ],
    )
    store.replace_document("menu", [_chunk("menu", 0, "Cafeteria", "Soup of the day", unrelated, everyone)])
    reranker = _MarkerReranker("DEFERRED")
    searcher = Searcher(
        store, embedder, 5, 50, 2000, role_groups={}, max_chunks_per_document=1, reranker=reranker
    )
    reader = Principal(subject="r", username="reader", tenant="acme", groups=(), roles=frozenset())
    try:
        plain = searcher.search(reader, query, SearchOptions(mode=Mode.DENSE))
        reranked = searcher.search(reader, query, SearchOptions(mode=Mode.DENSE, rerank=True))
    finally:
        store.close()

    assert [(h.document_id, h.chunk_index) for h in plain] == [("manual", 0), ("menu", 0)]
    # Both of the manual's passages reached the model, under the title and headings as ingest embeds them.
    assert "SET CONSTRAINTS\n\nDEFERRED checks wait until commit" in reranker.seen
    assert len(reranker.seen) == 3
    # The model's order is fused with the first stage's: the answering chunk now speaks for the manual.
    assert [(h.document_id, h.chunk_index) for h in reranked] == [("manual", 5), ("menu", 0)]


def test_reranking_without_a_reranker_is_a_failed_precondition(
    store: EdgeChunkStore, embedder: MiniLmEmbedder
) -> None:
    searcher = Searcher(store, embedder, 5, 50, 2000, role_groups={}, max_chunks_per_document=3)
    alice = Principal(subject="a", username="alice", tenant="acme", groups=("finance",), roles=frozenset())

    with pytest.raises(FailedPrecondition, match="no reranker"):
        searcher.search(alice, "budget", SearchOptions(rerank=True))


def test_an_audience_narrows_to_what_every_member_may_read(retrieval: str, issuer: DevIssuer) -> None:
    bob = common_pb2.Audience(acl_entries=["user:bob", "group:engineering", "everyone"])
    alone = _search(retrieval, issuer.mint("alice"), "What is the Q3 travel budget?")
    shared = _search(retrieval, issuer.mint("alice"), "What is the Q3 travel budget?", audience=[bob])

    assert "budget" in _documents(alone)
    assert _documents(shared) == ["vacation"]


@pytest.mark.parametrize(
    ("audience", "message"),
    [([[]], "no ACL entries"), ([["group:eng", "root"]], "malformed"), ([["everyone"]] * 600, "limit")],
)
def test_bad_audiences_get_invalid_argument(
    retrieval: str, issuer: DevIssuer, audience: list[list[str]], message: str
) -> None:
    members = [common_pb2.Audience(acl_entries=entries) for entries in audience]
    with pytest.raises(grpc.RpcError) as info:
        _search(retrieval, issuer.mint("alice"), "budget", audience=members)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()


def _at(seconds: float) -> Timestamp:
    return Timestamp(seconds=int(seconds))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (retrieval_pb2.SearchFilters(document_types=["html"]), {"failover"}),
        (retrieval_pb2.SearchFilters(uri_prefixes=["/docs/budget.md"]), {"budget"}),
        (retrieval_pb2.SearchFilters(uri_prefixes=["/doc"]), set()),
        (retrieval_pb2.SearchFilters(modified_after=_at(2_500)), {"budget"}),
        (retrieval_pb2.SearchFilters(modified_before=_at(2_500)), {"failover", "vacation", "handbook"}),
    ],
)
def test_metadata_filters_apply_inside_the_query(
    retrieval: str, issuer: DevIssuer, filters: retrieval_pb2.SearchFilters, expected: set[str]
) -> None:
    # A reader of everything, so that only the filters decide.
    token = issuer.mint("carol", groups=["finance", "engineering", "legal"])
    reply = _search(retrieval, token, "records budget failover leave", top_k=10, filters=filters)

    assert set(_documents(reply)) == expected


def test_a_reversed_time_range_is_invalid(retrieval: str, issuer: DevIssuer) -> None:
    filters = retrieval_pb2.SearchFilters(modified_after=_at(3_000), modified_before=_at(1_000))
    with pytest.raises(grpc.RpcError) as info:
        _search(retrieval, issuer.mint("alice"), "budget", filters=filters)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


TYPES = "pdf, html, markdown, text, docx, pptx, csv, xlsx"


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        # A file extension, a type ingest never stores, an empty value: each matched nothing, silently.
        (
            retrieval_pb2.SearchFilters(document_types=["md"]),
            f"unknown document_types 'md'; expected one of {TYPES}",
        ),
        (
            retrieval_pb2.SearchFilters(document_types=["html", "powerpoint", ""]),
            f"unknown document_types 'powerpoint', ''; expected one of {TYPES}",
        ),
        (
            retrieval_pb2.SearchFilters(modified_after=Timestamp(seconds=0, nanos=-5)),
            "filters.modified_after.nanos must be from 0 to 999,999,999, got -5",
        ),
        (
            retrieval_pb2.SearchFilters(modified_before=Timestamp(seconds=10, nanos=1_000_000_000)),
            "filters.modified_before.nanos must be from 0 to 999,999,999, got 1,000,000,000",
        ),
        (
            retrieval_pb2.SearchFilters(modified_after=Timestamp(seconds=-(2**62))),
            "modified_after must be a time from the year 1 to 9999, got -4.61169e+18 seconds",
        ),
        (
            retrieval_pb2.SearchFilters(modified_before=Timestamp(seconds=2**63 - 1)),
            "modified_before must be a time from the year 1 to 9999, got 9.22337e+18 seconds",
        ),
    ],
)
def test_unknown_document_types_and_impossible_times_are_invalid_naming_what_is_allowed(
    retrieval: str, issuer: DevIssuer, filters: retrieval_pb2.SearchFilters, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _search(retrieval, issuer.mint("alice"), "budget", filters=filters)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == message


@pytest.mark.parametrize("types", [["PDF", "html"], [".html"]])
def test_document_types_may_be_written_in_capitals_or_with_a_dot(
    retrieval: str, issuer: DevIssuer, types: list[str]
) -> None:
    token = issuer.mint("carol", groups=["finance", "engineering", "legal"])
    filters = retrieval_pb2.SearchFilters(
        document_types=types,
        modified_after=Timestamp(seconds=-62_135_596_800),
        modified_before=Timestamp(seconds=253_402_300_799, nanos=999_999_999),
    )
    reply = _search(retrieval, token, "records budget failover leave", top_k=10, filters=filters)

    assert set(_documents(reply)) == {"failover"}


def test_passages_say_when_ingest_marked_them_suspicious(retrieval: str, issuer: DevIssuer) -> None:
    reply = _search(retrieval, issuer.mint("alice"), "How many days of paid leave do employees get?")
    vacation = next(p for p in reply.passages if p.document_id == "vacation")
    budget = next(p for p in reply.passages if p.document_id == "budget")

    assert vacation.suspicious and list(vacation.suspicion) == ["instruction_override"]
    assert not budget.suspicious
