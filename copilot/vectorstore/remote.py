"""The embedded store over gRPC: Qdrant's engine can be opened by one process only, so in the embedded
default one small host process owns it and ingest and retrieval reach it the way they would reach a
Qdrant server in production."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence

import grpc

from copilot.errors import DependencyUnavailable, InvalidInput
from copilot.grpc_client import bearer, open_channel
from copilot.lexical import SparseVector
from copilot.store.v1 import store_pb2, store_pb2_grpc
from copilot.vectorstore.port import (
    NO_NARROWING,
    ChunkStore,
    DocumentAccess,
    Narrowing,
    ScoredChunk,
    StoredChunk,
    StoredVersion,
    query_conditions,
)

log = logging.getLogger(__name__)

#: Statuses the store host gives a request it will never accept (``InvalidInput`` on its side).
_REQUEST_ERRORS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE})


class RemoteChunkStore:
    """``ChunkStore`` client for the store host."""

    def __init__(self, target: str, api_key: str, timeout_s: float = 30.0) -> None:
        self._target = target
        self._metadata = bearer(api_key)
        self._channel = open_channel(target)
        self._stub = store_pb2_grpc.StoreServiceStub(self._channel)
        self._timeout = timeout_s

    def wait_ready(self, timeout_s: float) -> None:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError as exc:
            raise DependencyUnavailable(f"vector store at {self._target} is not reachable") from exc

    def _call(self, method: str, request: object) -> object:
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            # The host refused the request itself (a chunk of another document, a query of the wrong
            # dimension): every attempt would fail alike, so it is the caller's error, not an outage.
            if code in _REQUEST_ERRORS:
                raise InvalidInput(f"vector store {method} refused the request: {details}") from exc
            # Anything else (no connection, a deadline, a refused key, a failure inside the host) may pass:
            # callers retry DependencyUnavailable rather than give the request up.
            name = code.name if code is not None else "error"
            raise DependencyUnavailable(
                f"vector store at {self._target} {method} failed ({name}): {details}"
            ) from exc

    def replace_document(
        self, document_id: str, chunks: Sequence[StoredChunk], revision: int | None = None
    ) -> int:
        request = store_pb2.ReplaceDocumentRequest(
            document_id=document_id,
            revision=revision or 0,
            chunks=[
                store_pb2.StoredChunk(
                    point_id=c.point_id,
                    vector=c.vector,
                    payload_json=json.dumps(c.payload),
                    lexical=_sparse_proto(c.lexical),
                )
                for c in chunks
            ],
        )
        response = self._call("ReplaceDocument", request)
        assert isinstance(response, store_pb2.ReplaceDocumentResponse)
        return response.removed_stale

    def delete_document(self, document_id: str, revision: int | None = None) -> int:
        request = store_pb2.DeleteDocumentRequest(document_id=document_id, revision=revision or 0)
        response = self._call("DeleteDocument", request)
        assert isinstance(response, store_pb2.DeleteDocumentResponse)
        return response.deleted

    def purge_tombstones(self, before_revision: int) -> int:
        request = store_pb2.PurgeTombstonesRequest(before_revision=before_revision)
        response = self._call("PurgeTombstones", request)
        assert isinstance(response, store_pb2.PurgeTombstonesResponse)
        return response.removed

    def stored_version(self, document_id: str) -> StoredVersion | None:
        response = self._call(
            "GetDocumentHashes", store_pb2.GetDocumentHashesRequest(document_id=document_id)
        )
        assert isinstance(response, store_pb2.GetDocumentHashesResponse)
        if not response.stored:
            return None
        return StoredVersion(
            response.content_hash,
            response.access_hash,
            response.chunk_count,
            response.unannounced,
            response.revision,
        )

    def document_access(self, document_id: str) -> DocumentAccess | None:
        response = self._call(
            "GetDocumentAccess", store_pb2.GetDocumentAccessRequest(document_id=document_id)
        )
        assert isinstance(response, store_pb2.GetDocumentAccessResponse)
        if not response.stored:
            return None
        return DocumentAccess(
            tenant=response.tenant,
            acl=tuple(response.acl),
            classification=response.classification,
            title=response.title,
            uri=response.uri,
        )

    def update_access(
        self,
        document_id: str,
        tenant: str,
        acl: Sequence[str],
        classification: str,
        access_hash: str,
        fingerprint: str,
        unannounced: str = "",
        revision: int | None = None,
        content_hash: str = "",
    ) -> int:
        request = store_pb2.UpdateAccessRequest(
            document_id=document_id,
            tenant=tenant,
            acl=list(acl),
            classification=classification,
            access_hash=access_hash,
            fingerprint=fingerprint,
            unannounced=unannounced,
            revision=revision or 0,
            content_hash=content_hash,
        )
        response = self._call("UpdateAccess", request)
        assert isinstance(response, store_pb2.UpdateAccessResponse)
        return response.updated

    def mark_announced(self, document_id: str, unannounced: str) -> None:
        request = store_pb2.MarkAnnouncedRequest(document_id=document_id, unannounced=unannounced)
        self._call("MarkAnnounced", request)

    def query(
        self,
        vector: Sequence[float] | SparseVector,
        tenant: str,
        principals: Sequence[str],
        limit: int,
        *,
        narrow: Narrowing = NO_NARROWING,
        with_vector: bool = False,
    ) -> list[ScoredChunk]:
        if query_conditions(tenant, principals, narrow) is None:
            return []
        request = store_pb2.QueryRequest(
            tenant=tenant,
            principals=list(principals),
            limit=limit,
            audience=[store_pb2.Principals(entries=list(member)) for member in narrow.audience],
            uri_prefixes=list(narrow.uri_prefixes),
            document_types=list(narrow.document_types),
            with_vector=with_vector,
        )
        if isinstance(vector, SparseVector):
            if not vector:
                return []
            request.lexical.CopyFrom(_sparse_proto(vector))
        else:
            request.vector.extend(vector)
        if narrow.modified_after is not None:
            request.modified_after = narrow.modified_after
        if narrow.modified_before is not None:
            request.modified_before = narrow.modified_before
        response = self._call("Query", request)
        assert isinstance(response, store_pb2.QueryResponse)
        return [
            ScoredChunk(c.point_id, c.score, json.loads(c.payload_json), tuple(c.vector))
            for c in response.chunks
        ]

    def count(self) -> int:
        response = self._call("CountChunks", store_pb2.CountChunksRequest())
        assert isinstance(response, store_pb2.CountChunksResponse)
        return response.count

    def close(self) -> None:
        self._channel.close()


class StoreServicer(store_pb2_grpc.StoreServiceServicer):
    """Thin servicer over any ``ChunkStore`` (the edge engine in the embedded default)."""

    def __init__(self, store: ChunkStore) -> None:
        self._store = store

    def ReplaceDocument(
        self, request: store_pb2.ReplaceDocumentRequest, context: object
    ) -> store_pb2.ReplaceDocumentResponse:  # noqa: N802,E501
        try:
            chunks = [
                StoredChunk(
                    c.point_id,
                    list(c.vector),
                    json.loads(c.payload_json),
                    SparseVector(tuple(c.lexical.indices), tuple(c.lexical.values)),
                )
                for c in request.chunks
            ]
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"chunk payload is not JSON: {exc}") from exc
        try:
            removed = self._store.replace_document(request.document_id, chunks, request.revision or None)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        return store_pb2.ReplaceDocumentResponse(removed_stale=removed)

    def DeleteDocument(
        self, request: store_pb2.DeleteDocumentRequest, context: object
    ) -> store_pb2.DeleteDocumentResponse:  # noqa: N802,E501
        deleted = self._store.delete_document(request.document_id, request.revision or None)
        return store_pb2.DeleteDocumentResponse(deleted=deleted)

    def PurgeTombstones(  # noqa: N802
        self, request: store_pb2.PurgeTombstonesRequest, context: object
    ) -> store_pb2.PurgeTombstonesResponse:
        removed = self._store.purge_tombstones(request.before_revision)
        return store_pb2.PurgeTombstonesResponse(removed=removed)

    def GetDocumentHashes(  # noqa: N802
        self, request: store_pb2.GetDocumentHashesRequest, context: object
    ) -> store_pb2.GetDocumentHashesResponse:
        version = self._store.stored_version(request.document_id)
        if version is None:
            return store_pb2.GetDocumentHashesResponse(stored=False)
        return store_pb2.GetDocumentHashesResponse(
            stored=True,
            content_hash=version.content_hash,
            access_hash=version.access_hash,
            chunk_count=version.chunk_count,
            unannounced=version.unannounced,
            revision=version.revision,
        )

    def GetDocumentAccess(  # noqa: N802
        self, request: store_pb2.GetDocumentAccessRequest, context: object
    ) -> store_pb2.GetDocumentAccessResponse:
        access = self._store.document_access(request.document_id)
        if access is None:
            return store_pb2.GetDocumentAccessResponse(stored=False)
        return store_pb2.GetDocumentAccessResponse(
            stored=True,
            tenant=access.tenant,
            acl=list(access.acl),
            classification=access.classification,
            title=access.title,
            uri=access.uri,
        )

    def UpdateAccess(  # noqa: N802
        self, request: store_pb2.UpdateAccessRequest, context: object
    ) -> store_pb2.UpdateAccessResponse:
        updated = self._store.update_access(
            request.document_id,
            request.tenant,
            list(request.acl),
            request.classification,
            request.access_hash,
            request.fingerprint,
            request.unannounced,
            request.revision or None,
            request.content_hash,
        )
        return store_pb2.UpdateAccessResponse(updated=updated)

    def MarkAnnounced(  # noqa: N802
        self, request: store_pb2.MarkAnnouncedRequest, context: object
    ) -> store_pb2.MarkAnnouncedResponse:
        self._store.mark_announced(request.document_id, request.unannounced)
        return store_pb2.MarkAnnouncedResponse()

    def Query(self, request: store_pb2.QueryRequest, context: object) -> store_pb2.QueryResponse:  # noqa: N802
        if request.limit <= 0:
            raise InvalidInput("limit must be positive")
        if request.vector and request.lexical.indices:
            raise InvalidInput("a query is dense or lexical, not both")
        if len(request.lexical.indices) != len(request.lexical.values):
            raise InvalidInput("lexical query has different numbers of indices and values")
        # The engine panics on a NaN range bound.
        for bound in ("modified_after", "modified_before"):
            if request.HasField(bound) and math.isnan(getattr(request, bound)):
                raise InvalidInput(f"{bound} is not a number")
        vector: list[float] | SparseVector = (
            SparseVector(tuple(request.lexical.indices), tuple(request.lexical.values))
            if request.lexical.indices
            else list(request.vector)
        )
        narrow = Narrowing(
            audience=tuple(tuple(member.entries) for member in request.audience),
            uri_prefixes=tuple(request.uri_prefixes),
            document_types=tuple(request.document_types),
            modified_after=request.modified_after if request.HasField("modified_after") else None,
            modified_before=request.modified_before if request.HasField("modified_before") else None,
        )
        try:
            hits = self._store.query(
                vector,
                request.tenant,
                list(request.principals),
                request.limit,
                narrow=narrow,
                with_vector=request.with_vector,
            )
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
        return store_pb2.QueryResponse(
            chunks=[
                store_pb2.ScoredChunk(
                    point_id=h.point_id, score=h.score, payload_json=json.dumps(h.payload), vector=h.vector
                )
                for h in hits
            ]
        )

    def CountChunks(
        self, request: store_pb2.CountChunksRequest, context: object
    ) -> store_pb2.CountChunksResponse:  # noqa: N802,E501
        return store_pb2.CountChunksResponse(count=self._store.count())


def _sparse_proto(vector: SparseVector) -> store_pb2.SparseVector:
    return store_pb2.SparseVector(indices=list(vector.indices), values=list(vector.values))
