from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from copilot.auth import current_principal
from copilot.common.v1 import common_pb2
from copilot.errors import InvalidInput
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from copilot.vectorstore.port import Narrowing
from services.retrieval.explain import AccessExplainer
from services.retrieval.search import Hit, Mode, Searcher, SearchOptions

_MODES = {
    retrieval_pb2.SEARCH_MODE_UNSPECIFIED: None,
    retrieval_pb2.SEARCH_MODE_DENSE: Mode.DENSE,
    retrieval_pb2.SEARCH_MODE_SPARSE: Mode.LEXICAL,
    retrieval_pb2.SEARCH_MODE_HYBRID: Mode.HYBRID,
}


def passage_proto(hit: Hit) -> common_pb2.Passage:
    return common_pb2.Passage(
        chunk_id=hit.chunk_id,
        document_id=hit.document_id,
        title=hit.title,
        uri=hit.uri,
        text=hit.text,
        score=hit.score,
        heading_path=list(hit.heading_path),
        page=hit.page,
        char_start=hit.char_start,
        char_end=hit.char_end,
        access_reason=hit.access_reason,
        suspicious=bool(hit.suspicion),
        suspicion=list(hit.suspicion),
    )


def search_options(request: retrieval_pb2.SearchRequest) -> SearchOptions:
    if request.mode not in _MODES:
        raise InvalidInput(f"unknown search mode {request.mode}")
    f = request.filters
    return SearchOptions(
        top_k=request.top_k,
        mode=_MODES[request.mode],
        rerank=request.rerank,
        max_per_document=request.max_per_document,
        narrow=Narrowing(
            audience=tuple(tuple(member.acl_entries) for member in request.audience),
            uri_prefixes=tuple(f.uri_prefixes),
            document_types=tuple(f.document_types),
            modified_after=_seconds(f, "modified_after"),
            modified_before=_seconds(f, "modified_before"),
        ),
    )


def _seconds(filters: retrieval_pb2.SearchFilters, name: str) -> float | None:
    """The time bound ``name`` of ``filters`` in seconds, None if not set. Its range is checked with the
    other filters (Searcher._validate); nanos do not survive the conversion, so they are checked here."""
    if not filters.HasField(name):
        return None
    ts: timestamp_pb2.Timestamp = getattr(filters, name)
    if not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidInput(f"filters.{name}.nanos must be from 0 to 999,999,999, got {ts.nanos:,}")
    return ts.seconds + ts.nanos / 1e9


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, searcher: Searcher, explainer: AccessExplainer) -> None:
        self._searcher = searcher
        self._explainer = explainer

    def Search(
        self, request: retrieval_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> retrieval_pb2.SearchResponse:  # noqa: N802,E501
        hits = self._searcher.search(current_principal(), request.query, search_options(request))
        return retrieval_pb2.SearchResponse(passages=[passage_proto(h) for h in hits])

    def ExplainAccess(  # noqa: N802
        self, request: retrieval_pb2.ExplainAccessRequest, context: grpc.ServicerContext
    ) -> retrieval_pb2.ExplainAccessResponse:
        why = self._explainer.explain(current_principal(), request.document_id, request.username)
        return retrieval_pb2.ExplainAccessResponse(
            allowed=why.allowed,
            granted_by=list(why.granted_by),
            acl=list(why.acl),
            classification=why.classification,
            title=why.title,
            uri=why.uri,
            groups_unknown=why.groups_unknown,
        )
