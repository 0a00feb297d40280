"""ChunkStore over Qdrant Edge: Qdrant's engine in-process, persisted in one shard directory.

The shard holds an exclusive lock on its write-ahead log, so exactly one process (the store host) may
open a path; inside that process the gRPC worker threads share this adapter.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qdrant_edge import (
    CountRequest,
    Direction,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HasIdCondition,
    IsEmptyCondition,
    MatchAny,
    MatchValue,
    Modifier,
    OrderBy,
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

if TYPE_CHECKING:
    from qdrant_edge import Payload

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
        # Integer, not float: ordering by it (the newest point of a document) needs a range index.
        if REVISION_FIELD not in indexed:
            self._shard.update(UpdateOperation.create_field_index(REVISION_FIELD, PayloadSchemaType.Integer))
        self._add_missing_grants()
        self._add_missing_revisions()
        self._shard.flush()

    def replace_document(
        self, document_id: str, chunks: Sequence[StoredChunk], revision: int | None = None
    ) -> int:
        check_chunks(document_id, chunks)
        # The lock makes this store's writes take turns; revisions still decide between writes that
        # arrive out of order, as they do on a Qdrant server shared by several ingest replicas.
        with self._lock:
            if revision is None:
                revision = self._next_revision(document_id)
            points = [
                Point(c.point_id, _vectors(c), with_grants({**c.payload, REVISION_FIELD: revision}))
                for c in chunks
            ] or [Point(tombstone_id(document_id), {}, tombstone_payload(document_id, revision))]
            self._shard.update(UpdateOperation.upsert_points(points, _not_above(revision)))
            settled = self._settle(document_id)
            self._shard.flush()
            return settled.stale_chunks

    def delete_document(self, document_id: str, revision: int | None = None) -> int:
        return self.replace_document(document_id, [], revision)

    def purge_tombstones(self, before_revision: int) -> int:
        old = _old_tombstones(before_revision)
        # Under the lock no write lands between the count and the delete, so the count is what went.
        with self._lock:
            removed = self._shard.count(CountRequest(exact=True, filter=old))
            if removed:
                self._shard.update(UpdateOperation.delete_points_by_filter(old))
                self._shard.flush()
        return removed

    def stored_version(self, document_id: str) -> StoredVersion | None:
        # Under the lock no replace runs between the read and the two counts.
        with self._lock:
            payload = self._newest(document_id, VERSION_FIELDS)
            if payload is None:
                return None
            selected = _document_filter(document_id)
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
        revision: int | None = None,
        content_hash: str = "",
    ) -> int:
        payload = access_payload(tenant, acl, classification, access_hash, fingerprint)
        if unannounced:
            payload[UNANNOUNCED_FIELD] = unannounced
        version = {"content_hash": content_hash} if content_hash else {}
        with self._lock:
            if revision is None:
                revision = self._next_revision(document_id)
            payload[REVISION_FIELD] = revision
            selected = Filter(must=[_document_filter(document_id, **version), _not_above(revision)])
            self._shard.update(UpdateOperation.set_payload_by_filter(selected, payload))
            settled = self._settle(document_id)
            self._shard.flush()
            return settled.current if settled.newest == revision and settled.whole else 0

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
                as_written(hit.payload or {}),
                _dense(hit.vector) if with_vector else (),
            )
            for hit in hits
        ]

    def count(self) -> int:
        chunks = Filter(must_not=[IsEmptyCondition("document_id")])
        with self._lock:
            return self._shard.count(CountRequest(exact=True, filter=chunks))

    def close(self) -> None:
        with self._lock:
            self._shard.flush()
            self._shard.close()

    def _add_missing_grants(self) -> None:
        """Gives chunks stored before ``grants`` existed their keys: without them no query would find the
        chunks, and ingest does not rewrite an unchanged document. Each chunk's keys come from its own
        tenant and ACL."""
        # Tombstones have no grants and need none.
        lacking = Filter(
            must=[IsEmptyCondition(key=GRANTS_FIELD)], must_not=[IsEmptyCondition("document_id")]
        )
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

    def _add_missing_revisions(self) -> None:
        """Gives points stored before revisions existed revision 0: ordering by revision skips points
        without one, so ``stored_version`` would not find them."""
        lacking = Filter(must=[IsEmptyCondition(REVISION_FIELD)])
        found, _ = self._shard.scroll(ScrollRequest(limit=1, filter=lacking, with_payload=False))
        if found:
            self._shard.update(UpdateOperation.set_payload_by_filter(lacking, {REVISION_FIELD: 0}))

    def _newest(self, document_id: str, fields: list[str]) -> Payload | None:
        """``fields`` of the document's point (or tombstone) of the highest revision; None if it has none."""
        records, _ = self._shard.scroll(
            ScrollRequest(
                limit=1,
                filter=_document_points(document_id),
                with_payload=fields,
                order_by=OrderBy(REVISION_FIELD, Direction.Desc),
            )
        )
        return (records[0].payload or {}) if records else None

    def _next_revision(self, document_id: str) -> int:
        return new_revision(revision_of(self._newest(document_id, [REVISION_FIELD])))

    def _settle(self, document_id: str) -> Settled:
        """Removes the document's points below the highest revision among them (see the Qdrant server
        adapter's, which races other writers; here the lock keeps them out)."""
        tombstone = tombstone_id(document_id)
        points: list[tuple[bool, Payload]] = []
        offset = None
        while True:
            records, offset = self._shard.scroll(
                ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=_document_points(document_id),
                    with_payload=SETTLE_FIELDS,
                )
            )
            # The engine hands ids back as uuid.UUID while callers speak strings.
            points.extend((str(r.id) != tombstone, r.payload or {}) for r in records)
            if offset is None:
                break
        settled = settle(points)
        if settled.below:
            stale = Filter(must=[_document_points(document_id), _below(settled.newest)])
            self._shard.update(UpdateOperation.delete_points_by_filter(stale))
        return settled


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


def _document_points(document_id: str) -> Filter:
    """The document's chunks and its tombstone."""
    return Filter(
        should=[
            FieldCondition(key="document_id", match=MatchValue(document_id)),
            HasIdCondition({uuid.UUID(tombstone_id(document_id))}),
        ]
    )


def _not_above(revision: int) -> Filter:
    """Points a write of ``revision`` may overwrite: those of no higher revision, or of none."""
    return Filter(
        should=[
            FieldCondition(key=REVISION_FIELD, range=RangeFloat(lte=revision)),
            IsEmptyCondition(REVISION_FIELD),
        ]
    )


def _below(revision: int) -> Filter:
    return Filter(
        should=[
            FieldCondition(key=REVISION_FIELD, range=RangeFloat(lt=revision)),
            IsEmptyCondition(REVISION_FIELD),
        ]
    )


def _old_tombstones(before_revision: int) -> Filter:
    """Tombstones of a revision below ``before_revision``; never a chunk, which has a ``document_id``."""
    return Filter(
        must=[
            FieldCondition(key=REVISION_FIELD, range=RangeFloat(lt=before_revision)),
            IsEmptyCondition("document_id"),
        ],
        must_not=[IsEmptyCondition(TOMBSTONE_FIELD)],
    )


def _document_filter(document_id: str, **equal: str) -> Filter:
    """The document's points; ``equal`` adds payload keys that must hold the given values."""
    fields = {"document_id": document_id, **equal}
    return Filter(must=[FieldCondition(key=key, match=MatchValue(value)) for key, value in fields.items()])
