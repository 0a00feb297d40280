"""The chunk store port: what ingestion and retrieval need from a vector database, nothing more."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from copilot.lexical import SparseVector

#: Fixed so that re-ingesting a document yields the same point ids in every process and on every host.
POINT_ID_NAMESPACE = uuid.UUID("6f1d3c2e-8b4a-5e7f-9a0b-1c2d3e4f5a6b")

#: The named vectors both adapters store chunks under: the embedding and the BM25-style term weights.
DENSE_VECTOR = "dense"
LEXICAL_VECTOR = "lexical"

#: Tenant and ACL entry joined into one key per entry, so that the permission filter is a single condition:
#: the engine checked a separate tenant condition point by point, which took a filtered search at 100,000
#: chunks from 8 to 13 ms. Adapters derive these keys from ``tenant`` and ``acl`` on every write.
GRANTS_FIELD = "grants"
#: Payload fields the adapters filter on, and therefore index. Not ``TOMBSTONE_FIELD``: the hourly purge may
#: scan, and a new index is a write that a store opened with a read-only key (retrieval's, say) would make,
#: and be refused, on the upgrade that brings it.
INDEXED_FIELDS = ("document_id", "tenant", "acl", GRANTS_FIELD, "doc_type", "uri_ancestors")
#: Numeric payload fields filtered by range: seconds since the epoch.
RANGE_FIELDS = ("modified_at",)
#: Every ``doc_type`` ingest stores (one per parser), and so every value a ``document_types`` filter may
#: name; a test parses one file of each kind to hold ingest's parsers to this list.
DOCUMENT_TYPES = ("pdf", "html", "markdown", "text", "docx", "pptx", "csv", "xlsx")


@dataclass(frozen=True)
class StoredChunk:
    point_id: str
    vector: list[float]
    payload: dict[str, Any]
    lexical: SparseVector = SparseVector((), ())


@dataclass(frozen=True)
class Narrowing:
    """Conditions a query adds to the caller's permissions; each can only remove results.

    ``audience`` lists the ACL entries of other people who will see the results: a chunk must be readable
    by each of them as well. ``uri_prefixes`` match whole path segments (see ``uri_ancestors``).
    """

    audience: tuple[tuple[str, ...], ...] = ()
    uri_prefixes: tuple[str, ...] = ()
    document_types: tuple[str, ...] = ()
    modified_after: float | None = None
    modified_before: float | None = None


NO_NARROWING = Narrowing()


@dataclass(frozen=True)
class Condition:
    """One must-condition of a query's filter, in a form each adapter translates to its engine's types."""

    key: str
    any_of: tuple[str, ...] = ()
    at_least: float | None = None
    below: float | None = None


def query_conditions(tenant: str, principals: Sequence[str], narrow: Narrowing) -> list[Condition] | None:
    """Every condition a chunk must meet to be returned, or None when nothing may be returned.

    The one place that turns identity into a filter, so the adapters cannot disagree on who reads what.
    Missing identity, and an audience member with no entries, match nothing rather than everything.
    """
    if not tenant or not principals or any(not member for member in narrow.audience):
        return None
    conditions = [Condition(GRANTS_FIELD, tuple(grant_keys(tenant, principals)))]
    # The caller's grant already pins the tenant, so the audience's entries are matched within it.
    conditions += [Condition("acl", tuple(member)) for member in narrow.audience]
    if narrow.uri_prefixes:
        conditions.append(
            Condition("uri_ancestors", tuple(_normalise_prefix(p) for p in narrow.uri_prefixes))
        )
    if narrow.document_types:
        conditions.append(Condition("doc_type", tuple(document_type(t) for t in narrow.document_types)))
    if narrow.modified_after is not None or narrow.modified_before is not None:
        conditions.append(
            Condition("modified_at", at_least=narrow.modified_after, below=narrow.modified_before)
        )
    return conditions


def document_type(value: str) -> str:
    """A ``document_types`` filter value as stored: ``PDF`` and ``.pdf`` both read as ``pdf``. Whether
    it is one of ``DOCUMENT_TYPES`` is for the caller to check (retrieval refuses any other)."""
    return value.lower().lstrip(".")


def _normalise_prefix(prefix: str) -> str:
    return prefix.rstrip("/") or "/"


def searchable_text(title: str, heading_path: tuple[str, ...], text: str) -> str:
    """What is embedded and indexed for a chunk, and what a reranker reads: its text under the document
    title and headings.

    A chunk deep in a page rarely repeats what the page is about ("Parameters", "Notes"); the heading
    line puts it back, for the embedding and for BM25 alike.
    """
    context = list(dict.fromkeys(part.strip() for part in (title, *heading_path) if part.strip()))
    return f"{' > '.join(context)}\n\n{text}" if context else text


def uri_ancestors(uri: str) -> list[str]:
    """The uri and each of its parents at path-segment boundaries: what ``uri_prefixes`` matches against.

    ``/docs/hr/policy.md`` gives ``/``, ``/docs``, ``/docs/hr`` and itself, so the prefix ``/docs/h`` matches
    nothing: a prefix names a folder or a document, never half of a name.
    """
    scheme, sep, rest = uri.partition("://")
    head, path = (f"{scheme}://", rest) if sep else ("", uri)
    parts = [p for p in path.split("/") if p]
    root = "/" if path.startswith("/") else ""
    ancestors = [head + root] if head + root else []
    for i in range(1, len(parts) + 1):
        ancestors.append(head + root + "/".join(parts[:i]))
    return ancestors


@dataclass(frozen=True)
class ScoredChunk:
    point_id: str
    score: float
    payload: dict[str, Any]
    # The chunk's dense vector, when the query asked for it (to score lexical hits semantically too).
    vector: tuple[float, ...] = ()


@dataclass(frozen=True)
class DocumentAccess:
    """Who may read a document; every chunk of a document carries the same access fields."""

    tenant: str
    acl: tuple[str, ...]
    classification: str
    title: str
    uri: str


#: The payload keys ``DocumentAccess`` is read from.
DOCUMENT_ACCESS_FIELDS = ["tenant", "acl", "classification", "title", "uri"]

#: Payload key of a change written but not yet announced: ingest writes it with the chunks (or the new
#: access fields) and removes it once the change's event is published, so a retry after a failed publish
#: finds it and publishes then. Its value is ingest's business; stores hand it back and remove it.
UNANNOUNCED_FIELD = "unannounced"

#: Payload key of the write that stored a point (see ``ChunkStore.replace_document``): an integer that
#: orders the writes of one document, so that ingest replicas writing it at once agree on which wins.
REVISION_FIELD = "revision"
#: Payload key of a deleted document's tombstone (see ``tombstone_id``), naming the document.
TOMBSTONE_FIELD = "deleted_document_id"


def new_revision(after: int = 0) -> int:
    """A revision for a write that starts now: the clock in microseconds, or ``after`` + 1 if a clock
    behind another host's has not reached the revision this writer read (``after``).

    Microseconds, not nanoseconds: a Qdrant server compares payload numbers as doubles, exact up to 2**53.
    """
    return max(time.time_ns() // 1000, after + 1)


def revision_of(payload: dict[str, Any] | None) -> int:
    """A point's revision; 0 for points stored before revisions existed."""
    value = (payload or {}).get(REVISION_FIELD)
    return value if type(value) is int else 0


def tombstone_id(document_id: str) -> str:
    """The point a delete leaves, carrying its revision, so that an older write of the document that
    lands after the delete finds a newer revision and removes itself. It has no vectors and no grants,
    so no query finds it, and no ``document_id``, so no read of chunks does."""
    # "deleted" is no chunk index (those are digits), so this id is never a chunk's.
    return str(uuid.uuid5(POINT_ID_NAMESPACE, f"deleted:{document_id}"))


def tombstone_payload(document_id: str, revision: int) -> dict[str, Any]:
    return {TOMBSTONE_FIELD: document_id, REVISION_FIELD: revision}


@dataclass(frozen=True)
class StoredVersion:
    """What ``stored_version`` reads of a document in one go."""

    content_hash: str
    access_hash: str
    #: How many chunks the document has; 0 when only its delete's tombstone is left.
    chunk_count: int
    #: The ``UNANNOUNCED_FIELD`` of one of its points, "" when it has none.
    unannounced: str = ""
    #: The highest revision among its points and its tombstone: a new write must take a higher one.
    revision: int = 0

    @property
    def hashes(self) -> tuple[str, str]:
        return self.content_hash, self.access_hash


class ChunkStore(Protocol):
    def replace_document(
        self, document_id: str, chunks: Sequence[StoredChunk], revision: int | None = None
    ) -> int:
        """Upsert ``chunks`` as revision ``revision`` of the document, then remove its points below the
        highest revision it holds; returns how many chunks were removed.

        Writers of one document may race (ingest replicas on one Qdrant server). The upsert overwrites
        only points of a revision no higher than its own, and every write ends by removing what lies
        below the highest revision it finds, so whichever finishes last, only the highest revision's
        chunks remain: an older write landing late removes its own. Upserting first means readers see
        either the old or the new version of every chunk, never a document that has vanished. An empty
        ``chunks`` deletes the document, leaving a tombstone (``tombstone_id``) with the revision.
        ``revision`` None takes a new one above the stored ones (one more read).
        """
        ...

    def delete_document(self, document_id: str, revision: int | None = None) -> int:
        """Remove every chunk of the document below ``revision``; returns how many were removed."""
        ...

    def purge_tombstones(self, before_revision: int) -> int:
        """Removes the tombstones of deletes of a revision below ``before_revision``; returns how many were
        removed. Chunks, and tombstones at or above the cutoff, stay, even one written meanwhile.

        A tombstone guards against one thing only: a write of its document that started before the delete
        (a lower revision) and lands after it, which finds the tombstone's revision and removes itself. So
        a tombstone below the cutoff guards only against a write that started before the cutoff and has not
        landed yet; the caller picks a cutoff far enough back that none can be in flight. Its document then
        reads as never stored (``stored_version`` None).
        """
        ...

    def stored_version(self, document_id: str) -> StoredVersion | None:
        """The stored version's hashes, number of chunks, change not yet announced and revision (read
        from the point of the highest revision), or None if the document has no points: what ingest
        decides on. A deleted document reads as no chunks and the delete's revision.

        A hash missing from the payload reads as "" so that chunks stored before the hashes existed match
        no new hash and are re-ingested in full. So do both hashes when the stored points are not one
        whole version (see ``settled_hashes``): a replace cut short between its upsert and its delete left
        chunks of two versions, and only a full re-ingest removes the old ones.
        """
        ...

    def document_access(self, document_id: str) -> DocumentAccess | None:
        """The document's tenant, ACL, classification, title and uri, or None if it has no points."""
        ...

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
        """Overwrites the access fields, and the revision, of the document's chunks of ``content_hash``
        (any, when "") whose revision is no higher than ``revision``, then removes the points below the
        highest revision as ``replace_document`` does. Returns how many chunks carry the new access: 0
        unless they are one whole version and no newer write got in first, in which case the caller
        writes the document in full (its content was deleted or replaced meanwhile).

        Vectors and text stay as they are, so a changed access list needs no re-embedding. The change is
        visible to the next query. ``unannounced``, when given, is written as ``UNANNOUNCED_FIELD`` in the
        same update, so no crash can leave the new access without it.
        """
        ...

    def mark_announced(self, document_id: str, unannounced: str) -> None:
        """Removes ``UNANNOUNCED_FIELD`` from the document's points that hold ``unannounced``; a newer
        change written meanwhile keeps its own."""
        ...

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
        """Best chunks among those of ``tenant`` whose ``acl`` names any of ``principals``.

        A dense ``vector`` ranks by cosine similarity, a ``SparseVector`` by BM25 (term weights times the
        engine's IDF). The permission filter and ``narrow`` run inside the engine so that ``limit`` counts
        only visible chunks. See ``query_conditions`` for what matches nothing. ``with_vector`` returns each
        chunk's dense vector as well.
        """
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def grant_keys(tenant: str, entries: Sequence[str]) -> list[str]:
    """One key per ACL entry, qualified by the tenant: what a chunk's ``grants`` holds and a query matches."""
    # JSON keeps the pair unambiguous whatever a tenant or a user name contains ("/", ":" or quotes).
    return [json.dumps([tenant, entry], separators=(",", ":")) for entry in entries]


def _own_grants(payload: dict[str, Any]) -> list[str]:
    return grant_keys(str(payload.get("tenant", "")), [str(entry) for entry in payload.get("acl", ())])


def with_grants(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with its grant keys derived from its own ``tenant`` and ``acl``, which are what people
    are shown; every adapter writes chunks through this, so the two cannot disagree."""
    return {**payload, GRANTS_FIELD: _own_grants(payload)}


_Id = TypeVar("_Id")


def missing_grants(records: Iterable[tuple[_Id, dict[str, Any]]]) -> dict[tuple[str, ...], list[_Id]]:
    """Point ids by the grant keys their own ``tenant`` and ``acl`` give, for stores written before the
    keys existed: one payload write per distinct access list rather than one per chunk."""
    by_keys: dict[tuple[str, ...], list[_Id]] = {}
    for point_id, payload in records:
        by_keys.setdefault(tuple(_own_grants(payload)), []).append(point_id)
    return by_keys


def as_written(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload as its writer gave it: the grant keys and the revision are the store's business,
    not a reader's."""
    return {key: value for key, value in payload.items() if key not in (GRANTS_FIELD, REVISION_FIELD)}


def access_payload(
    tenant: str, acl: Sequence[str], classification: str, access_hash: str, fingerprint: str
) -> dict[str, Any]:
    """The payload keys ``update_access`` overwrites, named in one place for every adapter."""
    return {
        "tenant": tenant,
        "acl": list(acl),
        GRANTS_FIELD: grant_keys(tenant, acl),
        "classification": classification,
        "access_hash": access_hash,
        "fingerprint": fingerprint,
    }


def hashes_from_payload(payload: dict[str, Any] | None) -> tuple[str, str]:
    payload = payload or {}
    return str(payload.get("content_hash", "")), str(payload.get("access_hash", ""))


#: Payload key with the number of chunks of the document's version, written by ingest on every chunk.
CHUNK_COUNT_FIELD = "chunk_count"
#: What ``stored_version`` reads from one chunk of a document.
VERSION_FIELDS = ["content_hash", "access_hash", CHUNK_COUNT_FIELD, UNANNOUNCED_FIELD, REVISION_FIELD]
#: What a write reads of each of its document's points once it is in (see ``settle``).
SETTLE_FIELDS = [REVISION_FIELD, CHUNK_COUNT_FIELD]


def settled_version(payload: dict[str, Any] | None, stored: int, agreeing: int) -> StoredVersion:
    """``stored_version`` from one chunk's payload (read with ``VERSION_FIELDS``) and the counts
    ``settled_hashes`` takes."""
    content_hash, access_hash = settled_hashes(payload, stored, agreeing)
    unannounced = (payload or {}).get(UNANNOUNCED_FIELD)
    return StoredVersion(
        content_hash,
        access_hash,
        stored,
        unannounced if isinstance(unannounced, str) else "",
        revision_of(payload),
    )


@dataclass(frozen=True)
class Settled:
    """What a write finds of its document once its own points are in."""

    #: The highest revision among the document's points.
    newest: int
    #: Points below it, the tombstone included: what the write removes.
    below: int
    #: Chunks below it: what the write reports as removed.
    stale_chunks: int
    #: Chunks at it, and whether they are one whole version (as many as their chunk count says).
    current: int
    whole: bool


def settle(points: Iterable[tuple[bool, dict[str, Any]]]) -> Settled:
    """``Settled`` from (is a chunk, payload read with ``SETTLE_FIELDS``) for each of the document's
    points, its tombstone included."""
    read = [(is_chunk, revision_of(payload), payload) for is_chunk, payload in points]
    newest = max((revision for _, revision, _ in read), default=0)
    below = [is_chunk for is_chunk, revision, _ in read if revision < newest]
    current = [payload for is_chunk, revision, payload in read if is_chunk and revision == newest]
    expected = current[0].get(CHUNK_COUNT_FIELD) if current else None
    # Chunks stored before the count existed record none; they pass as whole.
    whole = bool(current) and (type(expected) is not int or expected == len(current))
    return Settled(newest, len(below), sum(below), len(current), whole)


def settled_hashes(payload: dict[str, Any] | None, stored: int, agreeing: int) -> tuple[str, str]:
    """The hashes ``stored_version`` reports, from one chunk's ``payload`` and two counts of the document's
    points: all of them (``stored``) and those carrying that chunk's two hashes (``agreeing``).

    The hashes stand only if every point carries them and, where chunks record it, their number is the
    version's chunk count; otherwise ("", ""), which matches no new hash, so ingest replaces the document
    again. That is how a replace cut short (the new chunks written, the old ones not yet removed, or only
    part of the new ones written) is finished by the next ingest instead of reading as unchanged.
    """
    hashes = hashes_from_payload(payload)
    expected = (payload or {}).get(CHUNK_COUNT_FIELD)
    # Chunks stored before the count existed record none; their hashes alone must agree.
    counted = type(expected) is not int or expected == stored
    return hashes if agreeing == stored and counted else ("", "")


def document_access_from_payload(payload: dict[str, Any] | None) -> DocumentAccess:
    payload = payload or {}
    return DocumentAccess(
        tenant=str(payload.get("tenant", "")),
        acl=tuple(str(entry) for entry in payload.get("acl", ())),
        classification=str(payload.get("classification", "")),
        title=str(payload.get("title", "")),
        uri=str(payload.get("uri", "")),
    )


def point_id_for(document_id: str, chunk_index: int) -> str:
    # The index goes first: it cannot contain ":", so distinct (document, index) pairs never share a name.
    return str(uuid.uuid5(POINT_ID_NAMESPACE, f"{chunk_index}:{document_id}"))


def check_chunks(document_id: str, chunks: Sequence[StoredChunk]) -> None:
    """Checks that ``chunks`` all belong to ``document_id`` and have UUID ids.

    Stale points are found by payload ``document_id``, so a mislabelled chunk would never be removed.
    """
    for chunk in chunks:
        if chunk.payload.get("document_id") != document_id:
            raise ValueError(
                f"chunk {chunk.point_id} has document_id {chunk.payload.get('document_id')!r}, "
                f"expected {document_id!r}"
            )
        uuid.UUID(chunk.point_id)
