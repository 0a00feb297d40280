from __future__ import annotations

import grpc

from copilot.auth import current_principal
from copilot.common.v1 import common_pb2
from copilot.errors import InvalidInput, PermissionDenied
from copilot.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.access import Access
from services.ingest.errors import IngestError
from services.ingest.pipeline import MAX_URI_CHARS, IngestPipeline, Outcome

#: Bounds on the access list. It travels in every chunk's payload and every DocumentEvent (Kafka refuses
#: events over 1 MB), so what a caller sends there is bounded like the uri; the filename shares the uri's.
MAX_ACCESS_ENTRIES = 1000
MAX_ACCESS_NAME_CHARS = 256
MAX_CLASSIFICATION_CHARS = 64

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
        _check_length("uri", request.uri, MAX_URI_CHARS)
        _check_length("filename", request.filename, MAX_URI_CHARS)
        _check_access(request.access)
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
        _check_length("uri", request.uri, MAX_URI_CHARS)  # no document has a longer one
        document_id, deleted = self._pipeline.delete(tenant, request.uri)
        return ingest_pb2.DeleteDocumentResponse(document_id=document_id, deleted_chunks=deleted)


def _check_length(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value):,} characters; the limit is {limit:,}")


def _check_access(access: common_pb2.AccessControl) -> None:
    entries = len(access.groups) + len(access.users)
    if entries > MAX_ACCESS_ENTRIES:
        raise InvalidInput(f"access lists {entries:,} groups and users; the limit is {MAX_ACCESS_ENTRIES:,}")
    for field in ("groups", "users"):
        for n, name in enumerate(getattr(access, field)):
            _check_length(f"access.{field}[{n}]", name, MAX_ACCESS_NAME_CHARS)
    _check_length("access.classification", access.classification, MAX_CLASSIFICATION_CHARS)
