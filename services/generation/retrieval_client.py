"""Retrieval over gRPC with the caller's own token, so their permissions apply to every search."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from copilot.common.v1 import common_pb2
from copilot.errors import DependencyUnavailable, InvalidInput, PermissionDenied, Unauthenticated
from copilot.grpc_client import bearer, open_channel
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

_ERRORS = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
}


class GrpcPassageSource:
    def __init__(self, target: str, timeout_s: float = 10.0, passages_per_document: int = 3) -> None:
        """``passages_per_document``: an answer reads better with a few chunks of its best document, where a
        search result list wants one per document (retrieval's default)."""
        self._target = target
        self._passages_per_document = passages_per_document
        self._channel = open_channel(target)
        self._stub = retrieval_pb2_grpc.RetrievalServiceStub(self._channel)
        self._timeout = timeout_s

    def search(
        self,
        token: str,
        query: str,
        top_k: int,
        audience: Sequence[common_pb2.Audience] = (),
        uri_prefixes: Sequence[str] = (),
        *,
        mode: retrieval_pb2.SearchMode = retrieval_pb2.SEARCH_MODE_UNSPECIFIED,
        rerank: bool = False,
    ) -> list[common_pb2.Passage]:
        """``mode`` and ``rerank`` as in SearchRequest: how the candidates are ranked."""
        # The audience goes through unchanged: retrieval narrows the hits to what all of them may read.
        request = retrieval_pb2.SearchRequest(
            query=query,
            top_k=top_k,
            audience=list(audience),
            filters=retrieval_pb2.SearchFilters(uri_prefixes=list(uri_prefixes)),
            mode=mode,
            rerank=rerank,
            max_per_document=self._passages_per_document,
        )
        try:
            response = self._stub.Search(request, metadata=bearer(token), timeout=self._timeout)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
            error = _ERRORS.get(code)
            if error is not None:
                raise error(details) from exc
            raise DependencyUnavailable(f"retrieval at {self._target} failed: {code.name} {details}") from exc
        return list(response.passages)

    def close(self) -> None:
        self._channel.close()
