from __future__ import annotations

import grpc

from copilot.auth import current_principal
from copilot.errors import InvalidInput, PermissionDenied
from copilot.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.access import Access
from services.ingest.errors import IngestError
from services.ingest.pipeline import MAX_URI_CHARS, IngestPipeline, Outcome

_OUTCOMES = {
    Outcome.CREATED: ingest_pb2.INGEST_OUTCOME_CREATED,
    Outcome.UPDATED: ingest_pb2.INGEST_OUTCOME_UPDATED,
    Outcome.UNCHANGED: ingest_pb2.INGEST_OUTCOME_UNCHANGED,
}


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, pipeline: IngestPipeline, ingest_role: str, max_document_bytes: int) -> None:
        self._pipeline = pipeline
        self._role = ingest_role
        self._max_bytes = max_document_bytes

    def _tenant(self, requested: str) -> str:
        principal = current_principal()
        if not principal.has_role(self._role):
            raise PermissionDenied(f"writing documents needs the {self._role!r} role")
        if requested and requested != principal.tenant:
            raise PermissionDenied(f"cannot write documents of tenant {requested!r}")
        return principal.tenant

    def IngestDocument(
        self, request: ingest_pb2.IngestDocumentRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.IngestDocumentResponse:  # noqa: N802,E501
        tenant = self._tenant(request.access.tenant)
        if not request.uri:
            raise InvalidInput("uri is required")
        if len(request.uri) > MAX_URI_CHARS:
            raise InvalidInput(f"uri is {len(request.uri):,} characters; the limit is {MAX_URI_CHARS:,}")
        filename = request.filename or request.uri
        if len(request.content) > self._max_bytes:
            raise InvalidInput(
                f"cannot ingest {filename!r}: it is {len(request.content):,} bytes, over the "
                f"{self._max_bytes:,}-byte limit for one document"
            )
        a = request.access
        access = Access(
            tenant=tenant,
            groups=tuple(a.groups),
            users=tuple(a.users),
            public=a.public,
            classification=a.classification or "internal",
        )
        if access.is_empty():
            raise InvalidInput(
                f"{request.uri}: no readers given (groups, users or public); refusing to store "
                "a document nobody is meant to read"
            )
        try:
            result = self._pipeline.ingest(request.uri, filename, request.content, access)
        except IngestError as exc:
            raise InvalidInput(str(exc)) from exc
        return ingest_pb2.IngestDocumentResponse(
            document_id=result.document_id,
            outcome=_OUTCOMES[result.outcome],
            chunk_count=result.chunk_count,
            title=result.title,
        )

    def DeleteDocument(
        self, request: ingest_pb2.DeleteDocumentRequest, context: grpc.ServicerContext
    ) -> ingest_pb2.DeleteDocumentResponse:  # noqa: N802,E501
        tenant = self._tenant("")
        if not request.uri:
            raise InvalidInput("uri is required")
        document_id, deleted = self._pipeline.delete(tenant, request.uri)
        return ingest_pb2.DeleteDocumentResponse(document_id=document_id, deleted_chunks=deleted)
