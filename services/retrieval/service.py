from __future__ import annotations

import grpc

from copilot.auth import current_principal
from copilot.common.v1 import common_pb2
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.retrieval.explain import AccessExplainer
from services.retrieval.search import Hit, Searcher


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
    )


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, searcher: Searcher, explainer: AccessExplainer) -> None:
        self._searcher = searcher
        self._explainer = explainer

    def Search(
        self, request: retrieval_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> retrieval_pb2.SearchResponse:  # noqa: N802,E501
        hits = self._searcher.search(current_principal(), request.query, request.top_k)
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
