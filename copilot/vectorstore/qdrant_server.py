"""ChunkStore over a Qdrant server through qdrant-client (its local mode serves the tests)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec, TypeVar

import grpc
import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from copilot.errors import DependencyUnavailable
from copilot.lexical import SparseVector
from copilot.vectorstore.port import (
    DENSE_VECTOR,
    DOCUMENT_ACCESS_FIELDS,
    GRANTS_FIELD,
    INDEXED_FIELDS,
    LEXICAL_VECTOR,
    NO_NARROWING,
    RANGE_FIELDS,
    UNANNOUNCED_FIELD,
    VERSION_FIELDS,
    ChunkStore,
    Condition,
    DocumentAccess,
    Narrowing,
    ScoredChunk,
    StoredChunk,
    StoredVersion,
    access_payload,
    document_access_from_payload,
    hashes_from_payload,
    missing_grants,
    new_point_ids,
    query_conditions,
    settled_version,
    with_grants,
    without_grants,
)

_SCROLL_PAGE = 256

#: The server could not be reached, or did not answer in time: the request may never have arrived.
_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)
#: HTTP statuses that say the server cannot serve now (or refuses this deployment's key), not that the
#: request is wrong; every 5xx counts too. Other 4xx (a malformed point, a filter on a missing vector) fail
#: the same way on every attempt and stay errors of the request.
_RETRYABLE_HTTP_STATUSES = frozenset({401, 403, 408, 429})
#: The same for qdrant-client over gRPC (``prefer_grpc``); Qdrant reports its internal errors as INTERNAL.
_RETRYABLE_GRPC_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _unavailable_reason(exc: Exception) -> str | None:
    """Why the server could not serve a call, if ``exc`` says it could not; None for any other error."""
    source = exc.source if isinstance(exc, ResponseHandlingException) else exc
    if isinstance(source, _TRANSPORT_ERRORS):
        detail = str(source)
        return f"{type(source).__name__}: {detail}" if detail else type(source).__name__
    if isinstance(exc, ResourceExhaustedResponse):
        return f"rate limited, retry after {exc.retry_after_s} s ({exc})"
    if isinstance(exc, UnexpectedResponse) and exc.status_code is not None:
        status = exc.status_code
        if status >= 500 or status in _RETRYABLE_HTTP_STATUSES:
            return f"HTTP {status} {exc.reason_phrase}".rstrip()
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        code = exc.code()
        if code in _RETRYABLE_GRPC_CODES:
            return f"gRPC {code.name}: {exc.details()}"
    return None


def _server_address(client: QdrantClient | None) -> str:
    # qdrant-client's own rendering of the address it calls (scheme, host, port, prefix): never the API
    # key, which travels in a header, nor credentials written into the url, which it parses off.
    address = getattr(getattr(client, "_client", None), "rest_uri", None)
    return str(address) if address else "(address unknown)"


def _unavailable_when_unreachable(
    method: Callable[Concatenate[QdrantServerChunkStore, _P], _R],
) -> Callable[Concatenate[QdrantServerChunkStore, _P], _R]:
    """Turns qdrant-client's errors that a later attempt may not hit (no connection, a timeout, a 5xx, a
    429, a refused key) into ``DependencyUnavailable``, the error callers retry: the Kafka ingest consumer
    reads the request again instead of dead-lettering it, gRPC services answer UNAVAILABLE. Any other
    error, such as a 400 for a malformed request, passes through unchanged."""

    @functools.wraps(method)
    def wrapper(self: QdrantServerChunkStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            reason = _unavailable_reason(exc)
            if reason is None:
                raise
            address = _server_address(getattr(self, "_client", None))
            raise DependencyUnavailable(
                f"Qdrant at {address} is unavailable ({method.__name__}): {reason}"
            ) from exc

    return wrapper


class QdrantServerChunkStore(ChunkStore):
    """Owns ``client`` from construction on: ``close`` closes it."""

    @_unavailable_when_unreachable
    def __init__(self, client: QdrantClient, collection: str, dimension: int) -> None:
        self._client = client
        self._collection = collection
        if not client.collection_exists(collection):
            dense = models.VectorParams(size=dimension, distance=models.Distance.COSINE)
            lexical = models.SparseVectorParams(modifier=models.Modifier.IDF)
            client.create_collection(
                collection,
                vectors_config={DENSE_VECTOR: dense},
                sparse_vectors_config={LEXICAL_VECTOR: lexical},
            )
        info = client.get_collection(collection)
        vectors = info.config.params.vectors
        existing = vectors.get(DENSE_VECTOR) if isinstance(vectors, dict) else None
        sparse = (info.config.params.sparse_vectors or {}).get(LEXICAL_VECTOR)
        # Qdrant would only reject the mismatch at the first upsert or query; fail at startup instead.
        if existing is None or existing.size != dimension or existing.distance != models.Distance.COSINE:
            raise ValueError(
                f"collection {collection!r} has no cosine vector {DENSE_VECTOR!r} "
                f"of size {dimension}: {vectors}"
            )
        if sparse is None or sparse.modifier != models.Modifier.IDF:
            raise ValueError(f"collection {collection!r} has no IDF sparse vector {LEXICAL_VECTOR!r}")
        for field in INDEXED_FIELDS:
            if field not in info.payload_schema:
                client.create_payload_index(collection, field, field_schema=models.PayloadSchemaType.KEYWORD)
        for field in RANGE_FIELDS:
            if field not in info.payload_schema:
                client.create_payload_index(collection, field, field_schema=models.PayloadSchemaType.FLOAT)
        self._add_missing_grants()

    @_unavailable_when_unreachable
    def replace_document(self, document_id: str, chunks: Sequence[StoredChunk]) -> int:
        keep = new_point_ids(document_id, chunks)
        if chunks:
            points = [
                models.PointStruct(id=c.point_id, vector=_vectors(c), payload=with_grants(c.payload))
                for c in chunks
            ]
            self._client.upsert(self._collection, points=points, wait=True)
        stale: list[models.ExtendedPointId] = [pid for pid in self._point_ids(document_id) if pid not in keep]
        if stale:
            self._client.delete(
                self._collection, points_selector=models.PointIdsList(points=stale), wait=True
            )
        return len(stale)

    def delete_document(self, document_id: str) -> int:
        return self.replace_document(document_id, [])

    @_unavailable_when_unreachable
    def stored_version(self, document_id: str) -> StoredVersion | None:
        records, _ = self._client.scroll(
            self._collection,
            scroll_filter=_document_filter(document_id),
            limit=1,
            with_payload=VERSION_FIELDS,
            with_vectors=False,
        )
        if not records:
            return None
        payload = records[0].payload or {}
        content_hash, access_hash = hashes_from_payload(payload)
        # Three calls, not one snapshot: a replace by another process in between makes the counts differ,
        # which reads as changed (one needless re-ingest), never as unchanged.
        stored = self._client.count(
            self._collection, count_filter=_document_filter(document_id), exact=True
        ).count
        same = _document_filter(document_id, content_hash=content_hash, access_hash=access_hash)
        agreeing = self._client.count(self._collection, count_filter=same, exact=True).count
        return settled_version(payload, stored, agreeing)

    @_unavailable_when_unreachable
    def document_access(self, document_id: str) -> DocumentAccess | None:
        records, _ = self._client.scroll(
            self._collection,
            scroll_filter=_document_filter(document_id),
            limit=1,
            with_payload=DOCUMENT_ACCESS_FIELDS,
            with_vectors=False,
        )
        return document_access_from_payload(records[0].payload) if records else None

    @_unavailable_when_unreachable
    def update_access(
        self,
        document_id: str,
        tenant: str,
        acl: Sequence[str],
        classification: str,
        access_hash: str,
        fingerprint: str,
        unannounced: str = "",
    ) -> int:
        selected = _document_filter(document_id)
        payload = access_payload(tenant, acl, classification, access_hash, fingerprint)
        if unannounced:
            payload[UNANNOUNCED_FIELD] = unannounced
        # The server offers no count of what a set-payload touched; a replace running in between could
        # make this count differ from it, which only the number reported would show.
        touched = self._client.count(self._collection, count_filter=selected, exact=True).count
        if touched:
            self._client.set_payload(
                self._collection,
                payload=payload,
                points=models.FilterSelector(filter=selected),
                wait=True,
            )
        return touched

    @_unavailable_when_unreachable
    def mark_announced(self, document_id: str, unannounced: str) -> None:
        pending = _document_filter(document_id, **{UNANNOUNCED_FIELD: unannounced})
        self._client.delete_payload(
            self._collection,
            keys=[UNANNOUNCED_FIELD],
            points=models.FilterSelector(filter=pending),
            wait=True,
        )

    @_unavailable_when_unreachable
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
        conditions = query_conditions(tenant, principals, narrow)
        if conditions is None:
            return []
        query: list[float] | models.SparseVector
        if isinstance(vector, SparseVector):
            if not vector:
                return []
            query, using = (
                models.SparseVector(indices=list(vector.indices), values=list(vector.values)),
                LEXICAL_VECTOR,
            )
        else:
            query, using = list(vector), DENSE_VECTOR
        response = self._client.query_points(
            self._collection,
            query=query,
            using=using,
            query_filter=models.Filter(must=[_condition(c) for c in conditions]),
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE_VECTOR] if with_vector else False,
        )
        return [
            ScoredChunk(
                str(p.id), p.score, without_grants(p.payload or {}), _dense(p.vector) if with_vector else ()
            )
            for p in response.points
        ]

    @_unavailable_when_unreachable
    def count(self) -> int:
        return self._client.count(self._collection, exact=True).count

    def close(self) -> None:
        self._client.close()

    def _add_missing_grants(self) -> None:
        """Gives chunks stored before ``grants`` existed their keys: without them no query would find the
        chunks, and ingest does not rewrite an unchanged document. Each chunk's keys come from its own
        tenant and ACL."""
        lacking = models.Filter(
            must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=GRANTS_FIELD))]
        )
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = self._client.scroll(
                self._collection,
                scroll_filter=lacking,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=["tenant", "acl"],
                with_vectors=False,
            )
            for keys, ids in missing_grants((r.id, r.payload or {}) for r in records).items():
                self._client.set_payload(
                    self._collection, payload={GRANTS_FIELD: list(keys)}, points=ids, wait=True
                )
            if offset is None:
                return

    def _point_ids(self, document_id: str) -> list[str]:
        ids: list[str] = []
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = self._client.scroll(
                self._collection,
                scroll_filter=_document_filter(document_id),
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            ids.extend(str(r.id) for r in records)
            if offset is None:
                return ids


def _vectors(chunk: StoredChunk) -> models.VectorStruct:
    vectors: dict[str, models.Vector] = {DENSE_VECTOR: list(chunk.vector)}
    if chunk.lexical:
        vectors[LEXICAL_VECTOR] = models.SparseVector(
            indices=list(chunk.lexical.indices), values=list(chunk.lexical.values)
        )
    return vectors


def _dense(vector: object) -> tuple[float, ...]:
    dense = vector.get(DENSE_VECTOR) if isinstance(vector, dict) else None
    return tuple(float(x) for x in dense) if isinstance(dense, list) else ()


def _condition(condition: Condition) -> models.FieldCondition:
    if condition.any_of:
        return models.FieldCondition(key=condition.key, match=models.MatchAny(any=list(condition.any_of)))
    return models.FieldCondition(
        key=condition.key, range=models.Range(gte=condition.at_least, lt=condition.below)
    )


def _document_filter(document_id: str, **equal: str) -> models.Filter:
    """The document's points; ``equal`` adds payload keys that must hold the given values."""
    fields = {"document_id": document_id, **equal}
    return models.Filter(
        must=[
            models.FieldCondition(key=key, match=models.MatchValue(value=value))
            for key, value in fields.items()
        ]
    )
