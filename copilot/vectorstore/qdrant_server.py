"""ChunkStore over a Qdrant server through qdrant-client (its local mode serves the tests)."""

from __future__ import annotations

from collections.abc import Sequence

from qdrant_client import QdrantClient, models

from copilot.lexical import SparseVector
from copilot.vectorstore.port import (
    DENSE_VECTOR,
    DOCUMENT_ACCESS_FIELDS,
    GRANTS_FIELD,
    INDEXED_FIELDS,
    LEXICAL_VECTOR,
    NO_NARROWING,
    RANGE_FIELDS,
    ChunkStore,
    Condition,
    DocumentAccess,
    Narrowing,
    ScoredChunk,
    StoredChunk,
    access_payload,
    document_access_from_payload,
    hashes_from_payload,
    missing_grants,
    new_point_ids,
    query_conditions,
    with_grants,
    without_grants,
)

_SCROLL_PAGE = 256


class QdrantServerChunkStore(ChunkStore):
    """Owns ``client`` from construction on: ``close`` closes it."""

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

    def document_hashes(self, document_id: str) -> tuple[str, str] | None:
        records, _ = self._client.scroll(
            self._collection,
            scroll_filter=_document_filter(document_id),
            limit=1,
            with_payload=["content_hash", "access_hash"],
            with_vectors=False,
        )
        return hashes_from_payload(records[0].payload) if records else None

    def document_access(self, document_id: str) -> DocumentAccess | None:
        records, _ = self._client.scroll(
            self._collection,
            scroll_filter=_document_filter(document_id),
            limit=1,
            with_payload=DOCUMENT_ACCESS_FIELDS,
            with_vectors=False,
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
    ) -> int:
        selected = _document_filter(document_id)
        # The server offers no count of what a set-payload touched; a replace running in between could
        # make this count differ from it, which only the number reported would show.
        touched = self._client.count(self._collection, count_filter=selected, exact=True).count
        if touched:
            self._client.set_payload(
                self._collection,
                payload=access_payload(tenant, acl, classification, access_hash, fingerprint),
                points=models.FilterSelector(filter=selected),
                wait=True,
            )
        return touched

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


def _document_filter(document_id: str) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))]
    )
