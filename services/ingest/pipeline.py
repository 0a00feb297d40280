"""Parse, chunk, embed and store one document with its access list; report what changed."""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from copilot.common.v1 import common_pb2
from copilot.embedding import Embedder
from copilot.events.v1 import events_pb2
from copilot.hygiene import suspicion
from copilot.lexical import encode_document
from copilot.logs import log_fields
from copilot.vectorstore.port import (
    CHUNK_COUNT_FIELD,
    UNANNOUNCED_FIELD,
    ChunkStore,
    StoredChunk,
    access_payload,
    new_revision,
    point_id_for,
    searchable_text,
    uri_ancestors,
)
from services.ingest.access import Access
from services.ingest.chunking import chunk
from services.ingest.errors import IngestError
from services.ingest.parsing import DEFAULT_LIMITS, ParseLimits, extraction_revision, parse

log = logging.getLogger(__name__)

# Part of every content hash: a change to how chunks are made must re-ingest unchanged files.
# 2: chunks carry the injection-hygiene and hidden-text fields.
# 3: BM25 term vectors, title and headings in what is embedded, uri_ancestors and modified_at for filters.
# 4: lxml for HTML, merged DOCX cells read once: malformed files may extract differently.
# A change to one format's extraction raises that parser's revision instead (parsing.extraction_revision), so
# that an upgrade re-embeds only the documents of that format.
PIPELINE_VERSION = "4"


#: Longest document uri accepted: it travels in every chunk's payload and every DocumentEvent, and Kafka
#: refuses events over 1 MB.
MAX_URI_CHARS = 2048
#: Locks that serialise requests for one document (a document id picks one); two documents rarely share
#: one, and then merely wait for each other.
_DOCUMENT_LOCK_STRIPES = 64


class Outcome(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class IngestResult:
    document_id: str
    outcome: Outcome
    chunk_count: int
    title: str


class DocumentEvents(Protocol):
    def publish(self, event: events_pb2.DocumentEvent) -> None: ...


@dataclass(frozen=True)
class _Change:
    """A change written to the store and still to be announced. Its chunks carry ``mark()`` as their
    ``UNANNOUNCED_FIELD`` until the event is published, so that a retry after a failed publish (a full
    spool) finds the change and announces it then, under the same event id for consumers to deduplicate.
    The chunk count is not in the mark: the store counts the document's points anyway."""

    kind: events_pb2.DocumentChange
    event_id: str
    title: str

    @property
    def outcome(self) -> Outcome:
        return Outcome.CREATED if self.kind == events_pb2.DOCUMENT_CHANGE_INGESTED else Outcome.UPDATED

    def mark(self) -> str:
        return json.dumps([events_pb2.DocumentChange.Name(self.kind), self.event_id, self.title])

    @classmethod
    def from_mark(cls, mark: str) -> _Change:
        kind, event_id, title = json.loads(mark)
        return cls(events_pb2.DocumentChange.Value(kind), event_id, title)


def document_id_for(tenant: str, uri: str) -> str:
    return hashlib.sha256(f"{tenant}\x00{uri}".encode()).hexdigest()[:32]


def _access_hash(access: Access) -> str:
    return hashlib.sha256(json.dumps(asdict(access), sort_keys=True, default=list).encode()).hexdigest()


def _access_proto(access: Access) -> common_pb2.AccessControl:
    return common_pb2.AccessControl(
        tenant=access.tenant,
        groups=list(access.groups),
        users=list(access.users),
        public=access.public,
        classification=access.classification,
    )


class IngestPipeline:
    """Safe to call from many threads at once: documents are parsed and embedded side by side (that is
    how a folder ingest fills every core), while two requests for one document take turns, so neither
    reads hashes the other is about to replace."""

    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        events: DocumentEvents,
        chunk_tokens: int = 200,
        overlap_tokens: int = 30,
        limits: ParseLimits = DEFAULT_LIMITS,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._events = events
        self._chunk_tokens = chunk_tokens
        self._overlap_tokens = overlap_tokens
        self._limits = limits
        self._document_locks = [threading.Lock() for _ in range(_DOCUMENT_LOCK_STRIPES)]
        # Loads the splitter's sentence tokenizer (nltk, about 2 s) at start-up, not in the first request.
        chunk(parse("warm-up.txt", b"Warm up. One sentence, then another."), chunk_tokens, overlap_tokens)

    def _content_hash(self, filename: str, content: bytes) -> str:
        h = hashlib.sha256()
        h.update(content)
        h.update(
            f"{PIPELINE_VERSION}:{self._embedder.model_id}:{self._chunk_tokens}:{self._overlap_tokens}".encode()
        )
        # Left out at revision 0, so documents whose parser never changed keep the hash they were stored with.
        if revision := extraction_revision(filename):
            h.update(f":extraction {revision}".encode())
        return h.hexdigest()

    def ingest(self, uri: str, filename: str, content: bytes, access: Access) -> IngestResult:
        document_id = document_id_for(access.tenant, uri)
        try:
            with self._document_lock(document_id):
                return self._ingest(document_id, uri, filename, content, access)
        except IngestError as exc:
            self._emit(document_id, uri, events_pb2.DOCUMENT_CHANGE_FAILED, 0, access, reason=str(exc))
            raise

    def _document_lock(self, document_id: str) -> threading.Lock:
        return self._document_locks[int(document_id[:8], 16) % _DOCUMENT_LOCK_STRIPES]

    def _ingest(
        self, document_id: str, uri: str, filename: str, content: bytes, access: Access
    ) -> IngestResult:
        content_hash = self._content_hash(filename, content)
        access_hash = _access_hash(access)
        fingerprint = hashlib.sha256(f"{content_hash}:{access_hash}".encode()).hexdigest()
        # Both hashes read as "" unless every stored chunk is of one whole version: a replace that died
        # between writing the new chunks and removing the old ones is then run again, not skipped.
        version = self._store.stored_version(document_id)
        # Taken before the slow parse and embed, and above what is stored: of two requests for one
        # document racing on two replicas (the locks here are per process), the store keeps the later.
        revision = new_revision(version.revision if version else 0)
        # A deleted document leaves only its revision behind.
        stored = version if version and version.chunk_count else None
        unannounced = _Change.from_mark(stored.unannounced) if stored and stored.unannounced else None
        if stored is not None and stored.hashes == (content_hash, access_hash):
            if unannounced is None:
                return IngestResult(document_id, Outcome.UNCHANGED, -1, "")
            # An earlier attempt stored this very version, then could not publish its event.
            self._announce(document_id, uri, access, unannounced, stored.chunk_count)
            log.info(
                "announced the earlier change of %s",
                uri,
                extra=log_fields(
                    document_id=document_id, chunks=stored.chunk_count, outcome=unannounced.outcome.value
                ),
            )
            return IngestResult(document_id, unannounced.outcome, stored.chunk_count, unannounced.title)
        # Consumers never heard of a document whose first version went unannounced: to them this
        # change creates it.
        created = stored is None or (
            unannounced is not None and unannounced.kind == events_pb2.DOCUMENT_CHANGE_INGESTED
        )
        kind = events_pb2.DOCUMENT_CHANGE_INGESTED if created else events_pb2.DOCUMENT_CHANGE_UPDATED
        acl = access.principals()
        if stored is not None and stored.content_hash == content_hash:
            change = _Change(kind, str(uuid.uuid4()), "")
            updated = self._store.update_access(
                document_id,
                access.tenant,
                acl,
                access.classification,
                access_hash,
                fingerprint,
                change.mark(),
                revision=revision,
                content_hash=content_hash,
            )
            # Zero means this content is no longer stored whole (deleted or replaced since the hashes
            # were read, say by another replica): ingest it afresh below, under the same revision.
            if updated:
                self._announce(document_id, uri, access, change, updated)
                log.info(
                    "updated access of %s",
                    uri,
                    extra=log_fields(document_id=document_id, chunks=updated, outcome=change.outcome.value),
                )
                return IngestResult(document_id, change.outcome, updated, "")
        doc = parse(filename, content, self._limits)
        chunks = chunk(doc, self._chunk_tokens, self._overlap_tokens)
        searchable = [searchable_text(doc.title, c.heading_path, c.text) for c in chunks]
        vectors = self._embedder.embed(searchable) if chunks else []
        modified_at = time.time()
        ancestors = uri_ancestors(uri)
        change = _Change(kind, str(uuid.uuid4()), doc.title)
        points = []
        for c, vector, text in zip(chunks, vectors, searchable, strict=True):
            reasons = suspicion(c.text)
            payload = {
                "document_id": document_id,
                "chunk_index": c.index,
                "uri": uri,
                "title": doc.title,
                "text": c.text,
                "heading_path": list(c.heading_path),
                "page": c.page,
                "char_start": c.char_start,
                "char_end": c.char_end,
                "doc_type": doc.doc_type,
                "uri_ancestors": ancestors,
                "modified_at": modified_at,
                "content_hash": content_hash,
                # Lets the store tell this version whole from a replace cut short (see settled_hashes).
                CHUNK_COUNT_FIELD: len(chunks),
                "suspicious": bool(reasons),
                "suspicion": reasons,
                "hidden_text_dropped": doc.hidden_text_dropped,
                **access_payload(access.tenant, acl, access.classification, access_hash, fingerprint),
                UNANNOUNCED_FIELD: change.mark(),
            }
            points.append(
                StoredChunk(point_id_for(document_id, c.index), list(vector), payload, encode_document(text))
            )
        removed = self._store.replace_document(document_id, points, revision)
        self._announce(document_id, uri, access, change, len(points))
        log.info(
            "ingested %s",
            uri,
            extra=log_fields(
                document_id=document_id,
                chunks=len(points),
                outcome=change.outcome.value,
                stale_removed=removed,
                suspicious_chunks=sum(1 for p in points if p.payload["suspicious"]),
                hidden_text_dropped=doc.hidden_text_dropped,
            ),
        )
        return IngestResult(document_id, change.outcome, len(points), doc.title)

    def refuse(self, uri: str, access: Access, reason: str) -> str:
        """Reports a request refused before parsing (say, one with no readers) as a failed change."""
        document_id = document_id_for(access.tenant, uri)
        self._emit(document_id, uri, events_pb2.DOCUMENT_CHANGE_FAILED, 0, access, reason=reason)
        return document_id

    def delete(self, tenant: str, uri: str) -> tuple[str, int]:
        document_id = document_id_for(tenant, uri)
        with self._document_lock(document_id):
            deleted = self._store.delete_document(document_id)
        self._emit(document_id, uri, events_pb2.DOCUMENT_CHANGE_DELETED, 0, None)
        return document_id, deleted

    def _announce(
        self, document_id: str, uri: str, access: Access, change: _Change, chunk_count: int
    ) -> None:
        self._emit(document_id, uri, change.kind, chunk_count, access, event_id=change.event_id)
        # Only after the publish: a failure in between announces the change twice, never not at all.
        self._store.mark_announced(document_id, change.mark())

    def _emit(
        self,
        document_id: str,
        uri: str,
        change: events_pb2.DocumentChange,
        chunk_count: int,
        access: Access | None,
        reason: str = "",
        event_id: str = "",
    ) -> None:
        occurred = Timestamp()
        occurred.GetCurrentTime()
        self._events.publish(
            events_pb2.DocumentEvent(
                event_id=event_id or str(uuid.uuid4()),
                occurred_at=occurred,
                document_id=document_id,
                uri=uri,
                change=change,
                chunk_count=chunk_count,
                reason=reason,
                access=_access_proto(access) if access else None,
            )
        )
