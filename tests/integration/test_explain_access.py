"""ExplainAccess through a real gRPC server, real signed tokens and Qdrant's engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from copilot.auth import TokenVerifier
from copilot.devissuer import DevIssuer
from copilot.embedding import MiniLmEmbedder
from copilot.grpc_client import bearer, open_channel
from copilot.grpc_server import GrpcServer
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from copilot.settings import AuthSettings
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.port import StoredChunk, point_id_for
from services.retrieval.explain import HIDDEN, AccessExplainer
from services.retrieval.search import Searcher
from services.retrieval.service import RetrievalServicer
from services.retrieval.settings import RetrievalSettings

# (document_id, tenant, acl, classification)
DOCS = [
    ("budget", "acme", ["group:finance"], "confidential"),
    ("failover", "acme", ["group:engineering"], "internal"),
    ("vacation", "acme", ["everyone"], "internal"),
    ("alice-review", "acme", ["everyone", "group:finance", "user:alice"], "restricted"),
    ("globex-plan", "globex", ["everyone"], "internal"),
]


@pytest.fixture(scope="module")
def retrieval(auth_settings: AuthSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    embedder = MiniLmEmbedder()
    store = EdgeChunkStore(Path(tmp_path_factory.mktemp("edge")), embedder.dimension)
    for doc_id, tenant, acl, classification in DOCS:
        [vector] = embedder.embed([f"The {doc_id} document."])
        payload = {
            "document_id": doc_id,
            "chunk_index": 0,
            "uri": f"/docs/{doc_id}.md",
            "title": doc_id.title(),
            "text": f"The {doc_id} document.",
            "tenant": tenant,
            "acl": acl,
            "classification": classification,
        }
        store.replace_document(doc_id, [StoredChunk(point_id_for(doc_id, 0), vector, payload)])
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
    )
    explainer = AccessExplainer(store, role_groups=settings.role_groups, auditor_role=settings.auditor_role)
    slot.fill(RetrievalServicer(searcher, explainer))
    server.set_serving(True)
    yield f"127.0.0.1:{server.port}"
    server.stop(1)
    store.close()


def _auditor(issuer: DevIssuer) -> str:
    return issuer.mint("bob", realm_access={"roles": ["copilot-user", "copilot-auditor"]})


def _explain(
    target: str, token: str, document_id: str, username: str = ""
) -> retrieval_pb2.ExplainAccessResponse:
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target))
    return stub.ExplainAccess(
        retrieval_pb2.ExplainAccessRequest(document_id=document_id, username=username),
        metadata=bearer(token),
        timeout=10,
    )


def _refusal(target: str, token: str, document_id: str, username: str = "") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _explain(target, token, document_id, username)
    return info.value


def test_a_reader_learns_which_of_their_entries_grant_access(retrieval: str, issuer: DevIssuer) -> None:
    reply = _explain(retrieval, issuer.mint("alice"), "budget")
    assert reply.allowed
    assert list(reply.granted_by) == ["group:finance"]
    assert (reply.title, reply.uri, reply.classification) == ("Budget", "/docs/budget.md", "confidential")
    assert not reply.groups_unknown
    # Who else may read it is for auditors only.
    assert list(reply.acl) == []


def test_granting_entries_come_most_specific_first(retrieval: str, issuer: DevIssuer) -> None:
    reply = _explain(retrieval, issuer.mint("alice"), "alice-review")
    assert list(reply.granted_by) == ["user:alice", "group:finance", "everyone"]


def test_a_mapped_role_grants_as_it_does_in_search(retrieval: str, issuer: DevIssuer) -> None:
    token = issuer.mint("carol", realm_access={"roles": ["copilot-user", "auditor"]})
    assert list(_explain(retrieval, token, "budget").granted_by) == ["group:finance"]


def test_unreadable_other_tenant_and_missing_documents_look_the_same(
    retrieval: str, issuer: DevIssuer
) -> None:
    refusals = [
        _refusal(retrieval, issuer.mint("bob"), "budget"),
        _refusal(retrieval, issuer.mint("bob"), "no-such-document"),
        _refusal(retrieval, issuer.mint("bob"), "globex-plan"),
        _refusal(retrieval, issuer.mint("alice", tenant="globex"), "vacation"),
        _refusal(retrieval, _auditor(issuer), "globex-plan"),
        _refusal(retrieval, _auditor(issuer), "no-such-document"),
    ]
    assert {(e.code(), e.details()) for e in refusals} == {(grpc.StatusCode.NOT_FOUND, HIDDEN)}


def test_an_auditor_reads_the_full_acl_of_a_document_they_cannot_read(
    retrieval: str, issuer: DevIssuer
) -> None:
    reply = _explain(retrieval, _auditor(issuer), "budget")
    assert not reply.allowed
    assert list(reply.granted_by) == []
    assert list(reply.acl) == ["group:finance"]
    assert reply.classification == "confidential"
    assert not reply.groups_unknown


def test_an_auditor_explains_another_user_by_name_only(retrieval: str, issuer: DevIssuer) -> None:
    auditor = _auditor(issuer)
    personal = _explain(retrieval, auditor, "alice-review", username="alice")
    assert personal.allowed and personal.groups_unknown
    assert list(personal.granted_by) == ["user:alice", "everyone"]
    assert list(personal.acl) == ["everyone", "group:finance", "user:alice"]
    # Alice reads the budget through her group, which only her own token carries: not claimed here.
    by_group = _explain(retrieval, auditor, "budget", username="alice")
    assert not by_group.allowed and by_group.groups_unknown
    assert list(by_group.granted_by) == []


def test_only_auditors_explain_another_user(retrieval: str, issuer: DevIssuer) -> None:
    refused = _refusal(retrieval, issuer.mint("bob"), "vacation", username="alice")
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    # Naming oneself is explaining oneself, with every entry one holds.
    own = _explain(retrieval, issuer.mint("bob"), "failover", username="bob")
    assert list(own.granted_by) == ["group:engineering"] and not own.groups_unknown


def test_an_empty_document_id_is_invalid(retrieval: str, issuer: DevIssuer) -> None:
    assert _refusal(retrieval, issuer.mint("alice"), "").code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_missing_token_is_unauthenticated(retrieval: str) -> None:
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(retrieval))
    with pytest.raises(grpc.RpcError) as info:
        stub.ExplainAccess(retrieval_pb2.ExplainAccessRequest(document_id="vacation"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
