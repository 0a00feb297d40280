"""An ingest process that dies inside ``replace_document``, after writing a document's new chunks and
before removing the old version's others, must leave nothing behind once the request is retried: the
retry sees that the stored chunks are not one whole version and replaces the document again.

Real processes and real stores: a child process ingests two versions into Qdrant's engine (the edge shard)
or into qdrant-client's local mode on disk, and exits on the spot (``os._exit``) at the delete; this process
then opens the same store and retries. Only the embedder is a stand-in (a hash of the text), to keep the
test fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient

from copilot.events.v1 import events_pb2
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.port import ChunkStore
from copilot.vectorstore.qdrant_server import QdrantServerChunkStore
from services.ingest.access import Access
from services.ingest.pipeline import IngestPipeline, Outcome, document_id_for
from tests.conftest import REPO
from tests.integration.store_standins import HashEmbedder, document_hashes

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8
CRASH_EXIT = 9
ACCESS = Access(tenant="acme", groups=("finance",), users=(), public=False, classification="internal")
URI = "/docs/memo.md"
V1 = (
    "# Memo\n\n" + "\n\n".join(f"Paragraph {i} about budgets and forecasts. " * 12 for i in range(12))
).encode()
V2 = b"# Memo\n\nNow a single short paragraph."


class Events:
    def __init__(self) -> None:
        self.events: list[events_pb2.DocumentEvent] = []

    def publish(self, event: events_pb2.DocumentEvent) -> None:
        self.events.append(event)


def _open(kind: str, path: Path) -> ChunkStore:
    if kind == "edge":
        return EdgeChunkStore(path, DIM)
    return QdrantServerChunkStore(QdrantClient(path=str(path)), "chunks", DIM)


def _die_at_the_delete(kind: str, store: ChunkStore) -> None:
    """Makes the process exit at once when ``replace_document`` reaches its delete of stale chunks."""
    if kind == "edge":
        shard = store._shard  # type: ignore[attr-defined]
        updates = [0]

        class DiesOnSecondUpdate:
            # replace_document's first update is the upsert, its second the delete.
            def update(self, operation: Any) -> Any:
                updates[0] += 1
                if updates[0] == 2:
                    os._exit(CRASH_EXIT)
                return shard.update(operation)

            def __getattr__(self, name: str) -> Any:
                return getattr(shard, name)

        store._shard = DiesOnSecondUpdate()  # type: ignore[attr-defined]
    else:
        client = store._client  # type: ignore[attr-defined]

        def delete(*args: Any, **kwargs: Any) -> Any:
            os._exit(CRASH_EXIT)

        client.delete = delete


def crash_mid_replace(kind: str, path: str) -> None:
    """The child process: v1 stored, then v2 cut short between its upsert and its delete."""
    store = _open(kind, Path(path))
    pipeline = IngestPipeline(store, HashEmbedder(DIM), Events())
    assert pipeline.ingest(URI, "memo.md", V1, ACCESS).outcome is Outcome.CREATED
    _die_at_the_delete(kind, store)
    pipeline.ingest(URI, "memo.md", V2, ACCESS)
    raise AssertionError("the ingest of v2 should have ended the process")


def _chunks_of(store: ChunkStore, document_id: str) -> list[dict[str, Any]]:
    hits = store.query([1.0] * DIM, "acme", ["group:finance"], limit=100)
    return [h.payload for h in hits if h.payload["document_id"] == document_id]


@pytest.mark.parametrize("kind", ["edge", "qdrant"])
def test_retry_after_a_crash_between_upsert_and_delete_leaves_only_the_new_version(
    kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "store"
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tests.integration.test_ingest_interrupted_replace import crash_mid_replace; "
            "crash_mid_replace(sys.argv[1], sys.argv[2])",
            kind,
            str(path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == CRASH_EXIT, child.stderr

    store = _open(kind, path)
    try:
        document_id = document_id_for("acme", URI)
        left = _chunks_of(store, document_id)
        versions = {c["content_hash"] for c in left}
        assert len(versions) == 2 and len(left) > 1, "the crash should leave chunks of both versions"
        assert document_hashes(store, document_id) == ("", "")

        events = Events()
        pipeline = IngestPipeline(store, HashEmbedder(DIM), events)
        retry = pipeline.ingest(URI, "memo.md", V2, ACCESS)

        assert retry.outcome is Outcome.UPDATED and retry.chunk_count == 1
        [chunk] = _chunks_of(store, document_id)
        assert chunk["text"].endswith("Now a single short paragraph.")
        assert store.count() == 1
        # The event the crashed attempt never published comes with the retry.
        assert [e.change for e in events.events] == [events_pb2.DOCUMENT_CHANGE_UPDATED]
        assert pipeline.ingest(URI, "memo.md", V2, ACCESS).outcome is Outcome.UNCHANGED
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["edge", "qdrant"])
def test_unchanged_documents_stay_unchanged(kind: str, tmp_path: Path) -> None:
    store = _open(kind, tmp_path / "store")
    try:
        pipeline = IngestPipeline(store, HashEmbedder(DIM), Events())
        first = pipeline.ingest(URI, "memo.md", V1, ACCESS)
        assert first.outcome is Outcome.CREATED and first.chunk_count > 1
        assert pipeline.ingest(URI, "memo.md", V1, ACCESS).outcome is Outcome.UNCHANGED
        legal = Access(tenant="acme", groups=("legal",), users=(), public=False, classification="internal")
        changed = pipeline.ingest(URI, "memo.md", V1, legal)
        assert (changed.outcome, changed.chunk_count) == (Outcome.UPDATED, first.chunk_count)
        assert pipeline.ingest(URI, "memo.md", V1, legal).outcome is Outcome.UNCHANGED
        assert store.count() == first.chunk_count
    finally:
        store.close()
