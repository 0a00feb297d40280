"""ChunkStore over a Qdrant server through qdrant-client (its local mode serves the tests).

Needs Qdrant 1.16 or later: writes are conditional upserts (``update_filter``), which is what lets
several ingest replicas write one document at once (see ``ChunkStore.replace_document``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

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
    REVISION_FIELD,
    SETTLE_FIELDS,
    TOMBSTONE_FIELD,
    UNANNOUNCED_FIELD,
    VERSION_FIELDS,
    ChunkStore,
    Condition,
    DocumentAccess,
    Narrowing,
    ScoredChunk,
    Settled,
    StoredChunk,
    StoredVersion,
    access_payload,
    as_written,
    check_chunks,
    document_access_from_payload,
    hashes_from_payload,
    missing_grants,
    new_revision,
    query_conditions,
    revision_of,
    settle,
    settled_version,
    tombstone_id,
    tombstone_payload,
    with_grants,
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
        # Integer, not float: ordering by it (the newest point of a document) needs a range index.
        if REVISION_FIELD not in info.payload_schema:
            client.create_payload_index(
                collection, REVISION_FIELD, field_schema=models.PayloadSchemaType.INTEGER
            )
        self._add_missing_grants()
        self._add_missing_revisions()

    @_unavailable_when_unreachable
    def replace_document(
        self, document_id: str, chunks: Sequence[StoredChunk], revision: int | None = None
    ) -> int:
        check_chunks(document_id, chunks)
        if revision is None:
            revision = self._next_revision(document_id)
        points = [
            models.PointStruct(
                id=c.point_id,
                vector=_vectors(c),
                payload=with_grants({**c.payload, REVISION_FIELD: revision}),
            )
            for c in chunks
        ] or [
            models.PointStruct(
                id=tombstone_id(document_id), vector={}, payload=tombstone_payload(document_id, revision)
            )
        ]
        self._client.upsert(self._collection, points=points, update_filter=_not_above(revision), wait=True)
        return self._settle(document_id).stale_chunks

    def delete_document(self, document_id: str, revision: int | None = None) -> int:
        return self.replace_document(document_id, [], revision)

    @_unavailable_when_unreachable
    def purge_tombstones(self, before_revision: int) -> int:
        old = _old_tombstones(before_revision)
        removed = 0
        for records in self._pages(old, with_payload=False):
            if not records:
                continue
            ids = [r.id for r in records]
            # By the ids read and the filter both: a tombstone that a new delete raised above the cutoff
            # since the read stays, and one written meanwhile, unread, waits for the next purge. So the
            # ids still there afterwards are the ones that stayed.
            read = models.HasIdCondition(has_id=ids)
            self._client.delete(
                self._collection,
                points_selector=models.FilterSelector(filter=models.Filter(must=[read, old])),
                wait=True,
            )
            left = self._client.count(
                self._collection, count_filter=models.Filter(must=[read]), exact=True
            ).count
            removed += len(ids) - left
        return removed

    @_unavailable_when_unreachable
    def stored_version(self, document_id: str) -> StoredVersion | None:
        payload = self._newest(document_id, VERSION_FIELDS)
        if payload is None:
            return None
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
        revision: int | None = None,
        content_hash: str = "",
    ) -> int:
        if revision is None:
            revision = self._next_revision(document_id)
        payload = access_payload(tenant, acl, classification, access_hash, fingerprint)
        payload[REVISION_FIELD] = revision
        if unannounced:
            payload[UNANNOUNCED_FIELD] = unannounced
        version = {"content_hash": content_hash} if content_hash else {}
        selected = models.Filter(must=[_document_filter(document_id, **version), _not_above(revision)])
        self._client.set_payload(
            self._collection, payload=payload, points=models.FilterSelector(filter=selected), wait=True
        )
        settled = self._settle(document_id)
        return settled.current if settled.newest == revision and settled.whole else 0

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
                str(p.id), p.score, as_written(p.payload or {}), _dense(p.vector) if with_vector else ()
            )
            for p in response.points
        ]

    @_unavailable_when_unreachable
    def count(self) -> int:
        chunks = models.Filter(must_not=[_lacking("document_id")])
        return self._client.count(self._collection, count_filter=chunks, exact=True).count

    def close(self) -> None:
        self._client.close()

    def _add_missing_grants(self) -> None:
        """Gives chunks stored before ``grants`` existed their keys: without them no query would find the
        chunks, and ingest does not rewrite an unchanged document. Each chunk's keys come from its own
        tenant and ACL."""
        # Tombstones have no grants and need none.
        lacking = models.Filter(must=[_lacking(GRANTS_FIELD)], must_not=[_lacking("document_id")])
        for records in self._pages(lacking, with_payload=["tenant", "acl"]):
            for keys, ids in missing_grants((r.id, r.payload or {}) for r in records).items():
                self._client.set_payload(
                    self._collection, payload={GRANTS_FIELD: list(keys)}, points=ids, wait=True
                )

    def _add_missing_revisions(self) -> None:
        """Gives points stored before revisions existed revision 0: ordering by revision skips points
        without one, so ``stored_version`` would not find them. Writes only when there are some, so that
        a store opened with a read-only key (retrieval's, say) still opens."""
        lacking = models.Filter(must=[_lacking(REVISION_FIELD)])
        found, _ = self._client.scroll(
            self._collection, scroll_filter=lacking, limit=1, with_payload=False, with_vectors=False
        )
        if found:
            self._client.set_payload(
                self._collection,
                payload={REVISION_FIELD: 0},
                points=models.FilterSelector(filter=lacking),
                wait=True,
            )

    def _pages(
        self, scroll_filter: models.Filter, with_payload: bool | list[str]
    ) -> Iterator[list[models.Record]]:
        """The points ``scroll_filter`` matches, a page at a time, without their vectors."""
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = self._client.scroll(
                self._collection,
                scroll_filter=scroll_filter,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=with_payload,
                with_vectors=False,
            )
            yield records
            if offset is None:
                return

    def _newest(self, document_id: str, fields: list[str]) -> dict[str, Any] | None:
        """``fields`` of the document's point (or tombstone) of the highest revision; None if it has none."""
        records, _ = self._client.scroll(
            self._collection,
            scroll_filter=_document_points(document_id),
            limit=1,
            order_by=models.OrderBy(key=REVISION_FIELD, direction=models.Direction.DESC),
            with_payload=fields,
            with_vectors=False,
        )
        return (records[0].payload or {}) if records else None

    def _next_revision(self, document_id: str) -> int:
        return new_revision(revision_of(self._newest(document_id, [REVISION_FIELD])))

    def _settle(self, document_id: str) -> Settled:
        """Removes the document's points below the highest revision among them: a newer write's leftovers
        when this one is the newest so far, this write's own when a newer one got in first. Every point it
        must remove was stored before this read, or the write that stored it later removes it itself."""
        tombstone = tombstone_id(document_id)
        points = [
            (str(r.id) != tombstone, r.payload or {})
            for records in self._pages(_document_points(document_id), with_payload=SETTLE_FIELDS)
            for r in records
        ]
        settled = settle(points)
        if settled.below:
            # By filter, not by the ids read: a newer write may have overwritten some of them since.
            stale = models.Filter(must=[_document_points(document_id), _below(settled.newest)])
            self._client.delete(
                self._collection, points_selector=models.FilterSelector(filter=stale), wait=True
            )
        return settled


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


def _lacking(key: str) -> models.IsEmptyCondition:
    return models.IsEmptyCondition(is_empty=models.PayloadField(key=key))


def _document_points(document_id: str) -> models.Filter:
    """The document's chunks and its tombstone."""
    return models.Filter(
        should=[
            models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id)),
            models.HasIdCondition(has_id=[tombstone_id(document_id)]),
        ]
    )


def _not_above(revision: int) -> models.Filter:
    """Points a write of ``revision`` may overwrite: those of no higher revision, or of none."""
    return models.Filter(
        should=[
            models.FieldCondition(key=REVISION_FIELD, range=models.Range(lte=revision)),
            _lacking(REVISION_FIELD),
        ]
    )


def _below(revision: int) -> models.Filter:
    return models.Filter(
        should=[
            models.FieldCondition(key=REVISION_FIELD, range=models.Range(lt=revision)),
            _lacking(REVISION_FIELD),
        ]
    )


def _old_tombstones(before_revision: int) -> models.Filter:
    """Tombstones of a revision below ``before_revision``; never a chunk, which has a ``document_id``."""
    return models.Filter(
        must=[
            models.FieldCondition(key=REVISION_FIELD, range=models.Range(lt=before_revision)),
            _lacking("document_id"),
        ],
        must_not=[_lacking(TOMBSTONE_FIELD)],
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
