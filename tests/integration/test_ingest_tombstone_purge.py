"""The ingest service purges the tombstones deletes leave once they are older than its retention, on the
thread ``services.ingest.server`` starts, over the real store: in process, and behind the store host."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from copilot.events.v1 import events_pb2
from copilot.ports import free_port
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.remote import RemoteChunkStore
from services.ingest.access import Access
from services.ingest.pipeline import IngestPipeline
from services.ingest.server import TombstonePurge
from services.ingest.settings import IngestSettings
from tests.integration.kafka_checks import wait_until
from tests.integration.store_standins import HashEmbedder, serve_store_host

DIM = 8
ACCESS = Access(tenant="acme", groups=("finance",), users=(), public=False)
KEY = "a-store-key-for-this-test-only"


class _Events:
    def publish(self, event: events_pb2.DocumentEvent) -> None:
        pass


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "services.ingest.server" and r.levelno == level
    ]


def test_a_deleted_documents_tombstone_is_purged_once_older_than_the_retention(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "services.ingest.server")
    store = EdgeChunkStore(tmp_path / "edge", DIM)
    pipeline = IngestPipeline(store, HashEmbedder(DIM), _Events())
    kept = pipeline.ingest("/docs/kept.md", "kept.md", b"# Kept\n\nStays.", ACCESS).document_id
    deleted, _ = pipeline.delete("acme", "/docs/gone.md")
    tombstone = store.stored_version(deleted)
    assert tombstone is not None and tombstone.chunk_count == 0
    settings = IngestSettings(tombstone_retention_s=1, tombstone_purge_interval_s=0.05)
    purge = TombstonePurge(store, settings.tombstone_retention_s, settings.tombstone_purge_interval_s)
    try:
        # Younger than the retention, the tombstone still holds off older writes.
        assert purge.purge() == 0
        assert store.stored_version(deleted) == tombstone
        purge.start()
        assert wait_until(lambda: bool(_messages(caplog, logging.INFO)), 10)
        assert _messages(caplog, logging.INFO) == ["purged 1 delete tombstones"]
        assert store.stored_version(deleted) is None
        version = store.stored_version(kept)
        assert version is not None and version.chunk_count == store.count() == 1
    finally:
        purge.stop()
        store.close()


def test_a_failed_round_is_logged_and_the_next_round_tries_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "services.ingest.server")
    edge = EdgeChunkStore(tmp_path / "edge", DIM)
    edge.delete_document("gone", 1)
    port = free_port()
    # The store host is not up yet: the first rounds fail.
    remote = RemoteChunkStore(f"127.0.0.1:{port}", KEY, timeout_s=2)
    purge = TombstonePurge(remote, retention_s=0.01, interval_s=0.1)
    server = None
    try:
        purge.start()
        assert wait_until(lambda: bool(_messages(caplog, logging.WARNING)), 10)
        assert _messages(caplog, logging.WARNING)[0].startswith("purging delete tombstones failed (")
        assert edge.stored_version("gone") is not None
        server = serve_store_host(edge, KEY, port)
        assert wait_until(lambda: bool(_messages(caplog, logging.INFO)), 30)
        assert _messages(caplog, logging.INFO) == ["purged 1 delete tombstones"]
        assert edge.stored_version("gone") is None
    finally:
        purge.stop()
        remote.close()
        if server is not None:
            server.stop(1)
        edge.close()
    assert not purge._thread.is_alive()
