"""A change stored but not announced, because publishing its DocumentEvent failed after the store write,
is announced by the retry, once: the retry finds the stored version unchanged, but marked as not yet
announced. Against the real spooling publisher (its spool full while the broker is away), the real broker,
the store host over gRPC on the edge engine, and qdrant-client's local mode; the embedder is a stand-in
(a hash of the text): this is about storage and events, not ranking."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from qdrant_client import QdrantClient

from copilot.broker import start_tansu
from copilot.errors import DependencyUnavailable
from copilot.events.v1 import events_pb2
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.port import ChunkStore
from copilot.vectorstore.qdrant_server import QdrantServerChunkStore
from services.ingest.access import Access
from services.ingest.pipeline import IngestPipeline, IngestResult, Outcome, document_id_for
from tests.conftest import free_port
from tests.integration.kafka_checks import read_from_start
from tests.integration.store_standins import HashEmbedder, served_edge_store

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8
TOPIC = "copilot.documents.v1"
URI = "/docs/memo.md"
FINANCE = Access(tenant="acme", groups=("finance",), users=(), public=False, classification="internal")
LEGAL = Access(tenant="acme", groups=("legal",), users=(), public=False, classification="internal")
MEMO = ("# Memo\n\n" + "\n\n".join(f"Paragraph {i} about budgets. " * 12 for i in range(6))).encode()
SHORT = b"# Memo\n\nOne short paragraph now."


def _stop(broker: subprocess.Popen[bytes]) -> None:
    broker.terminate()
    try:
        broker.wait(10)
    except subprocess.TimeoutExpired:
        broker.kill()


def test_a_change_whose_event_met_a_full_spool_is_announced_by_the_retry(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"  # nothing listens yet: every event stays spooled
    publisher = EventPublisher(bootstrap, tmp_path / "spool.sqlite", spool_max_bytes=64 * 1024)
    # Filled with events smaller than a DocumentEvent of the memo, so that one no longer fits either.
    fillers = 0
    with pytest.raises(DependencyUnavailable, match="full"):
        for _ in range(100_000):
            publisher.publish(TOPIC, "filler", events_pb2.DocumentEvent(event_id="filler"))
            fillers += 1
    broker = None
    with served_edge_store(tmp_path / "edge", DIM) as (_, _, store):
        pipeline = IngestPipeline(
            store, HashEmbedder(DIM), TopicPublisher(publisher, TOPIC, key=lambda e: e.document_id)
        )
        document_id = document_id_for("acme", URI)
        try:
            with pytest.raises(DependencyUnavailable, match="cannot write the event spool"):
                pipeline.ingest(URI, "memo.md", MEMO, FINANCE)
            chunks = store.count()
            assert chunks > 1, "the chunks were stored before the publish failed"

            broker = start_tansu(port, tmp_path / "tansu.log")
            ensure_topics(bootstrap, [TOPIC], partitions=1)
            assert publisher.flush(60), f"{publisher.pending()} events still spooled"

            retry = pipeline.ingest(URI, "memo.md", MEMO, FINANCE)
            # What the first attempt would have answered had its publish gone through.
            assert retry == IngestResult(document_id, Outcome.CREATED, chunks, "Memo")
            assert pipeline.ingest(URI, "memo.md", MEMO, FINANCE).outcome is Outcome.UNCHANGED
            assert publisher.flush(60)

            events = []
            # One more than there should be, to see that no second announcement follows.
            for record in read_from_start(bootstrap, TOPIC, fillers + 2, timeout_s=10):
                event = events_pb2.DocumentEvent()
                event.ParseFromString(record.value)
                events.append(event)
            assert len(events) == fillers + 1
            [announced] = [e for e in events if e.document_id == document_id]
            assert announced.change == events_pb2.DOCUMENT_CHANGE_INGESTED
            assert announced.chunk_count == chunks and announced.uri == URI
            assert list(announced.access.groups) == ["finance"]
        finally:
            publisher.close(timeout_s=1)
            if broker is not None:
                _stop(broker)


class SpoolFullOnce:
    """Stands in for the spooling publisher at its size limit: the next publish raises as the real one
    does then (``DependencyUnavailable``), later ones are taken."""

    def __init__(self) -> None:
        self.events: list[events_pb2.DocumentEvent] = []
        self.full = False

    def publish(self, event: events_pb2.DocumentEvent) -> None:
        if self.full:
            self.full = False
            raise DependencyUnavailable("cannot write the event spool: database or disk is full")
        self.events.append(event)


@pytest.fixture(params=["edge", "qdrant"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChunkStore]:
    opened: ChunkStore = (
        EdgeChunkStore(tmp_path / "edge", DIM)
        if request.param == "edge"
        else QdrantServerChunkStore(QdrantClient(":memory:"), "chunks", DIM)
    )
    yield opened
    opened.close()


def test_an_access_change_whose_event_failed_is_announced_by_the_retry(store: ChunkStore) -> None:
    events = SpoolFullOnce()
    pipeline = IngestPipeline(store, HashEmbedder(DIM), events)
    first = pipeline.ingest(URI, "memo.md", MEMO, FINANCE)
    assert first.outcome is Outcome.CREATED

    events.full = True
    with pytest.raises(DependencyUnavailable):
        pipeline.ingest(URI, "memo.md", MEMO, LEGAL)
    retry = pipeline.ingest(URI, "memo.md", MEMO, LEGAL)

    assert retry == IngestResult(first.document_id, Outcome.UPDATED, first.chunk_count, "")
    assert [(e.change, e.chunk_count) for e in events.events] == [
        (events_pb2.DOCUMENT_CHANGE_INGESTED, first.chunk_count),
        (events_pb2.DOCUMENT_CHANGE_UPDATED, first.chunk_count),
    ]
    assert list(events.events[-1].access.groups) == ["legal"]
    assert pipeline.ingest(URI, "memo.md", MEMO, LEGAL).outcome is Outcome.UNCHANGED
    assert len(events.events) == 2


def test_a_document_whose_creation_went_unannounced_is_announced_as_created_by_its_next_version(
    store: ChunkStore,
) -> None:
    events = SpoolFullOnce()
    pipeline = IngestPipeline(store, HashEmbedder(DIM), events)
    events.full = True
    with pytest.raises(DependencyUnavailable):
        pipeline.ingest(URI, "memo.md", MEMO, FINANCE)

    # Not a retry: a new version arrives before one. Consumers have never heard of the document.
    second = pipeline.ingest(URI, "memo.md", SHORT, FINANCE)

    assert (second.outcome, second.chunk_count) == (Outcome.CREATED, 1)
    assert [(e.change, e.chunk_count) for e in events.events] == [(events_pb2.DOCUMENT_CHANGE_INGESTED, 1)]
    assert pipeline.ingest(URI, "memo.md", SHORT, FINANCE).outcome is Outcome.UNCHANGED
    assert pipeline.ingest(URI, "memo.md", SHORT, LEGAL).outcome is Outcome.UPDATED
    assert [e.change for e in events.events] == [
        events_pb2.DOCUMENT_CHANGE_INGESTED,
        events_pb2.DOCUMENT_CHANGE_UPDATED,
    ]
