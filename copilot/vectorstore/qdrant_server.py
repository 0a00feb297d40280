"""ChunkStore over a Qdrant server through qdrant-client (its local mode serves the tests)."""

from __future__ import annotations

from collections.abc import Sequence

from qdrant_client import QdrantClient, models

from copilot.vectorstore.port import (
    DENSE_VECTOR,
    DOCUMENT_ACCESS_FIELDS,
    INDEXED_FIELDS,
    ChunkStore,
    DocumentAccess,
    ScoredChunk,
    StoredChunk,
    access_payload,
    document_access_from_payload,
    hashes_from_payload,
    new_point_ids,
)

_SCROLL_PAGE = 256


class QdrantServerChunkStore(ChunkStore):
    """Owns ``client`` from construction on: ``close`` closes it."""

    def __init__(self, client: QdrantClient, collection: str, dimension: int) -> None:
        self._client = client
        self._collection = collection
        if not client.collection_exists(collection):
            dense = models.VectorParams(size=dimension, distance=models.Distance.COSINE)
            client.create_collection(collection, vectors_config={DENSE_VECTOR: dense})
        info = client.get_collection(collection)
        vectors = info.config.params.vectors
        existing = vectors.get(DENSE_VECTOR) if isinstance(vectors, dict) else None
        # Qdrant would only reject the mismatch at the first upsert or query; fail at startup instead.
        if existing is None or existing.size != dimension or existing.distance != models.Distance.COSINE:
            raise ValueError(
                f"collection {collection!r} has no cosine vector {DENSE_VECTOR!r} "
                f"of size {dimension}: {vectors}"
            )
        for field in INDEXED_FIELDS:
            if field not in info.payload_schema:
                client.create_payload_index(collection, field, field_schema=models.PayloadSchemaType.KEYWORD)

    def replace_document(self, document_id: str, chunks: Sequence[StoredChunk]) -> int:
        keep = new_point_ids(document_id, chunks)
        if chunks:
            points = [
                models.PointStruct(
                    id=c.point_id, vector={DENSE_VECTOR: list(c.vector)}, payload=dict(c.payload)
                )
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
        self, vector: Sequence[float], tenant: str, principals: Sequence[str], limit: int
    ) -> list[ScoredChunk]:
        if not tenant or not principals:
            return []
        permitted = models.Filter(
            must=[
                models.FieldCondition(key="tenant", match=models.MatchValue(value=tenant)),
                models.FieldCondition(key="acl", match=models.MatchAny(any=list(principals))),
            ]
        )
        response = self._client.query_points(
            self._collection,
            query=list(vector),
            using=DENSE_VECTOR,
            query_filter=permitted,
            limit=limit,
            with_payload=True,
        )
        return [ScoredChunk(str(p.id), p.score, dict(p.payload or {})) for p in response.points]

    def count(self) -> int:
        return self._client.count(self._collection, exact=True).count

    def close(self) -> None:
        self._client.close()

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


def _document_filter(document_id: str) -> models.Filter:
    return models.Filter(
        must=[models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))]
    )
