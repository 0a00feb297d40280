"""ChunkStore over Qdrant Edge: Qdrant's engine in-process, persisted in one shard directory.

The shard holds an exclusive lock on its write-ahead log, so exactly one process (the store host) may
open a path; inside that process the gRPC worker threads share this adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    IsEmptyCondition,
    MatchAny,
    MatchValue,
    Modifier,
    PayloadSchemaType,
    Point,
    Query,
    QueryRequest,
    RangeFloat,
    ScrollRequest,
    UpdateOperation,
)
from qdrant_edge import SparseVector as EdgeSparseVector

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

if TYPE_CHECKING:
    from qdrant_edge import PointId

_SCROLL_PAGE = 256


class EdgeChunkStore(ChunkStore):
    def __init__(self, path: Path, dimension: int) -> None:
        config = EdgeConfig(
            vectors={DENSE_VECTOR: EdgeVectorParams(size=dimension, distance=Distance.Cosine)},
            sparse_vectors={LEXICAL_VECTOR: EdgeSparseVectorParams(modifier=Modifier.Idf)},
        )
        self._dimension = dimension
        # Passing the config on load makes the engine reject a shard built for another dimension.
        if path.exists():
            try:
                self._shard = EdgeShard.load(str(path), config)
            except Exception as exc:
                if "WouldBlock" in str(exc):
                    raise ValueError(
                        f"the chunk store at {path} is open in another process (WouldBlock); "
                        "only one process, the store host, may open it"
                    ) from exc
                raise ValueError(
                    f"the chunk store at {path} was made by an older version or for another embedding "
                    f"model ({exc}); remove it and ingest again"
                ) from exc
        else:
            self._shard = EdgeShard.create(str(path), config)
        # Writers take turns, so that update_access counts and rewrites the same points. Queries take no
        # lock: the engine guards its segments itself and releases the GIL while searching (4 threads
        # querying beside a writer ran 1.4x faster than one at a time, all answers intact), so a search
        # no longer waits behind another search or an ingest. A search during replace_document may see
        # the old and the new chunks side by side for a moment, as on a Qdrant server.
        self._lock = threading.Lock()
        indexed = self._shard.info().payload_schema
        for field in INDEXED_FIELDS:
            if field not in indexed:
                self._shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
        for field in RANGE_FIELDS:
            if field not in indexed:
                self._shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Float))
        self._add_missing_grants()
        self._shard.flush()

    def replace_document(self, document_id: str, chunks: Sequence[StoredChunk]) -> int:
        keep = new_point_ids(document_id, chunks)
        with self._lock:
            if chunks:
                points = [Point(c.point_id, _vectors(c), with_grants(c.payload)) for c in chunks]
                self._shard.update(UpdateOperation.upsert_points(points))
            stale: list[PointId] = [pid for pid in self._point_ids(document_id) if pid not in keep]
            if stale:
                self._shard.update(UpdateOperation.delete_points(stale))
            self._shard.flush()
            return len(stale)

    def delete_document(self, document_id: str) -> int:
        return self.replace_document(document_id, [])

    def stored_version(self, document_id: str) -> StoredVersion | None:
        selected = _document_filter(document_id)
        # Under the lock no replace runs between the read and the two counts.
        with self._lock:
            records, _ = self._shard.scroll(
                ScrollRequest(limit=1, filter=selected, with_payload=VERSION_FIELDS)
            )
            if not records:
                return None
            payload = records[0].payload or {}
            content_hash, access_hash = hashes_from_payload(payload)
            stored = self._shard.count(CountRequest(exact=True, filter=selected))
            same = _document_filter(document_id, content_hash=content_hash, access_hash=access_hash)
            agreeing = self._shard.count(CountRequest(exact=True, filter=same))
        return settled_version(payload, stored, agreeing)

    def document_access(self, document_id: str) -> DocumentAccess | None:
        with self._lock:
            records, _ = self._shard.scroll(
                ScrollRequest(
                    limit=1, filter=_document_filter(document_id), with_payload=DOCUMENT_ACCESS_FIELDS
                )
            )
        return document_access_from_payload(records[0].payload) if records else None

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
        # Under the lock no replace can add or remove points between the count and the update.
        with self._lock:
            touched = self._shard.count(CountRequest(exact=True, filter=selected))
            if touched:
                self._shard.update(UpdateOperation.set_payload_by_filter(selected, payload))
                self._shard.flush()
            return touched

    def mark_announced(self, document_id: str, unannounced: str) -> None:
        pending = _document_filter(document_id, **{UNANNOUNCED_FIELD: unannounced})
        with self._lock:
            # Not flushed: a crash that loses this only announces the change once more.
            self._shard.update(UpdateOperation.delete_payload_by_filter(pending, [UNANNOUNCED_FIELD]))

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
        if isinstance(vector, SparseVector):
            if not vector:
                return []
            nearest = Query.Nearest(
                EdgeSparseVector(list(vector.indices), list(vector.values)), using=LEXICAL_VECTOR
            )
        else:
            if len(vector) != self._dimension:
                raise ValueError(
                    f"query vector has {len(vector)} dimensions; the store's have {self._dimension}"
                )
            nearest = Query.Nearest(list(vector), using=DENSE_VECTOR)
        request = QueryRequest(
            limit=limit,
            query=nearest,
            filter=Filter(must=[_condition(c) for c in conditions]),
            with_payload=True,
            with_vector=[DENSE_VECTOR] if with_vector else False,
        )
        hits = self._shard.query(request)
        return [
            ScoredChunk(
                str(hit.id),
                hit.score,
                without_grants(hit.payload or {}),
                _dense(hit.vector) if with_vector else (),
            )
            for hit in hits
        ]

    def count(self) -> int:
        with self._lock:
            return self._shard.count(CountRequest(exact=True))

    def close(self) -> None:
        with self._lock:
            self._shard.flush()
            self._shard.close()

    def _add_missing_grants(self) -> None:
        """Gives chunks stored before ``grants`` existed their keys: without them no query would find the
        chunks, and ingest does not rewrite an unchanged document. Each chunk's keys come from its own
        tenant and ACL."""
        lacking = Filter(must=[IsEmptyCondition(key=GRANTS_FIELD)])
        offset = None
        while True:
            records, offset = self._shard.scroll(
                ScrollRequest(
                    offset=offset, limit=_SCROLL_PAGE, filter=lacking, with_payload=["tenant", "acl"]
                )
            )
            for keys, ids in missing_grants((r.id, r.payload or {}) for r in records).items():
                self._shard.update(UpdateOperation.set_payload(ids, {GRANTS_FIELD: list(keys)}))
            if offset is None:
                return

    def _point_ids(self, document_id: str) -> list[str]:
        ids: list[str] = []
        offset = None
        while True:
            records, offset = self._shard.scroll(
                ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=_document_filter(document_id),
                    with_payload=False,
                )
            )
            # The engine hands ids back as uuid.UUID while callers speak strings.
            ids.extend(str(r.id) for r in records)
            if offset is None:
                return ids


_NamedVector = list[float] | EdgeSparseVector | list[list[float]]


def _vectors(chunk: StoredChunk) -> dict[str, _NamedVector]:
    vectors: dict[str, _NamedVector] = {DENSE_VECTOR: list(chunk.vector)}
    if chunk.lexical:
        lexical = chunk.lexical
        vectors[LEXICAL_VECTOR] = EdgeSparseVector(list(lexical.indices), list(lexical.values))
    return vectors


def _dense(vector: object) -> tuple[float, ...]:
    return tuple(vector[DENSE_VECTOR]) if isinstance(vector, dict) and DENSE_VECTOR in vector else ()


def _condition(condition: Condition) -> FieldCondition:
    if condition.any_of:
        return FieldCondition(key=condition.key, match=MatchAny(list(condition.any_of)))
    return FieldCondition(key=condition.key, range=RangeFloat(gte=condition.at_least, lt=condition.below))


def _document_filter(document_id: str, **equal: str) -> Filter:
    """The document's points; ``equal`` adds payload keys that must hold the given values."""
    fields = {"document_id": document_id, **equal}
    return Filter(must=[FieldCondition(key=key, match=MatchValue(value)) for key, value in fields.items()])
