"""Ingest requests from Kafka against the real broker, embedder and Qdrant's engine: good documents stored,
bad ones reported as failed changes, garbage dead-lettered, a redelivery after a restart a no-op, documents
run side by side with each one's requests in order, and a store outage waited out."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from copilot.common.v1 import common_pb2
from copilot.embedding import MiniLmEmbedder
from copilot.errors import DependencyUnavailable
from copilot.events.v1 import events_pb2
from copilot.kafka import DEAD_LETTER_REASON_HEADER, EventPublisher, TopicPublisher, ensure_topics
from copilot.vectorstore.edge import EdgeChunkStore
from services.ingest.pipeline import IngestPipeline
from services.ingest.requests import IngestRequestConsumer
from tests.integration.kafka_checks import read_from_start, wait_until

MEMO = b"""# Travel budget

The Q3 2026 travel budget for the finance team is 412,000 USD, approved by the CFO in June.
"""


def _request(
    uri: str,
    filename: str,
    content: bytes,
    groups: list[str],
    action: events_pb2.IngestAction.ValueType = events_pb2.INGEST_ACTION_INGEST,
) -> bytes:
    return events_pb2.IngestRequestEvent(
        event_id=str(uuid.uuid4()),
        action=action,
        uri=uri,
        filename=filename,
        content=content,
        access=common_pb2.AccessControl(groups=groups),
        tenant="acme",
        requested_by="sync-bot",
    ).SerializeToString()


def test_requests_are_ingested_refused_or_dead_lettered_and_redelivery_is_a_no_op(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, documents = f"requests-{suffix}", f"dlq-{suffix}", f"documents-{suffix}"
    group = f"ingest-{suffix}"
    ensure_topics(kafka_bootstrap, [topic, dlq, documents], partitions=1)
    embedder = MiniLmEmbedder()
    store = EdgeChunkStore(tmp_path / "edge", embedder.dimension)
    publisher = EventPublisher(kafka_bootstrap, tmp_path / "spool.sqlite")
    document_events = TopicPublisher(publisher, documents, key=lambda e: e.document_id)
    pipeline = IngestPipeline(store, embedder, document_events)

    good = _request("/docs/travel.md", "travel.md", MEMO, ["finance"])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, good)
    corrupt = _request("/docs/broken.pdf", "broken.pdf", b"%PDF-1.4 not really a pdf", ["finance"])
    producer.send(topic, corrupt)
    producer.send(topic, _request("/docs/nobody.md", "nobody.md", MEMO, []))
    producer.send(topic, b"\xff\xfe not a protobuf")
    producer.flush()

    consumer = IngestRequestConsumer(kafka_bootstrap, topic, group, dlq, pipeline, 1024 * 1024)
    consumer.start()
    assert wait_until(lambda: consumer.handled == 4), "all four requests should be handled"
    consumer.stop()

    chunks = store.count()
    assert chunks > 0
    [vector] = embedder.embed(["What is the Q3 2026 travel budget?"])
    found = store.query(vector, "acme", ["group:finance"], 3)
    assert [c.payload["uri"] for c in found] == ["/docs/travel.md"]
    assert store.query(vector, "acme", ["group:engineering", "everyone"], 3) == []

    assert publisher.flush()
    events = []
    for record in read_from_start(kafka_bootstrap, documents, 3):
        event = events_pb2.DocumentEvent()
        event.ParseFromString(record.value)
        events.append(event)
    by_uri = {e.uri: e for e in events}
    assert len(events) == 3 and set(by_uri) == {"/docs/travel.md", "/docs/broken.pdf", "/docs/nobody.md"}
    assert by_uri["/docs/travel.md"].change == events_pb2.DOCUMENT_CHANGE_INGESTED
    assert by_uri["/docs/broken.pdf"].change == events_pb2.DOCUMENT_CHANGE_FAILED
    assert "broken.pdf" in by_uri["/docs/broken.pdf"].reason
    assert by_uri["/docs/nobody.md"].change == events_pb2.DOCUMENT_CHANGE_FAILED
    assert "no readers" in by_uri["/docs/nobody.md"].reason

    [dead] = read_from_start(kafka_bootstrap, dlq, 1)
    assert dead.value == b"\xff\xfe not a protobuf"
    assert dict(dead.headers)[DEAD_LETTER_REASON_HEADER].startswith(b"undecodable")

    # As after a crash between the store write and the commit: the same request arrives again.
    producer.send(topic, good)
    producer.flush()
    producer.close()
    restarted = IngestRequestConsumer(kafka_bootstrap, topic, group, dlq, pipeline, 1024 * 1024)
    restarted.start()
    assert wait_until(lambda: restarted.handled == 1), "the redelivered request should be handled"
    restarted.stop()
    offsets = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    assert offsets.committed(TopicPartition(topic, 0)) == 5, "only the new record was read after restart"
    offsets.close()
    assert restarted.handled == 1
    assert store.count() == chunks
    assert publisher.flush()
    # An unchanged document publishes no change, so the documents topic holds only the first three events.
    assert len(read_from_start(kafka_bootstrap, documents, 4, timeout_s=3)) == 3

    publisher.close()
    store.close()


class _DocumentEvents:
    def __init__(self) -> None:
        self.events: list[events_pb2.DocumentEvent] = []

    def publish(self, event: events_pb2.DocumentEvent) -> None:
        self.events.append(event)


class _OverlapCountingEmbedder:
    """The real embedder, holding each call a moment and counting how many calls overlap."""

    def __init__(self, embedder: MiniLmEmbedder) -> None:
        self._embedder = embedder
        self.model_id = embedder.model_id
        self.dimension = embedder.dimension
        self._lock = threading.Lock()
        self._in_flight = 0
        self.most_in_flight = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            self._in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self._in_flight)
        try:
            time.sleep(0.3)
            return self._embedder.embed(texts)
        finally:
            with self._lock:
                self._in_flight -= 1


class _FirstVersionsLate:
    """The real pipeline, with first versions of documents arriving late (as from a slow source), so that
    a later request for the same document would overtake them unless the consumer keeps their order."""

    def __init__(self, pipeline: IngestPipeline) -> None:
        self._pipeline = pipeline

    def ingest(self, uri: str, filename: str, content: bytes, access: Any) -> Any:
        if b"Version 1:" in content:
            time.sleep(0.5)
        return self._pipeline.ingest(uri, filename, content, access)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)


class _StoreWithOutage:
    """The real store, refusing writes while ``down`` is set, as a remote Qdrant does when it is away."""

    def __init__(self, store: EdgeChunkStore) -> None:
        self._store = store
        self.down = threading.Event()
        self.refused = 0

    def replace_document(self, document_id: str, chunks: Sequence[Any], revision: int | None = None) -> int:
        if self.down.is_set():
            self.refused += 1
            raise DependencyUnavailable("vector store ReplaceDocument failed: connection refused")
        return self._store.replace_document(document_id, chunks, revision)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _memo(subject: str, version: int = 1) -> bytes:
    return f"# {subject}\n\nVersion {version}: the {subject} policy is reviewed every quarter.\n".encode()


def _uris_in(store: EdgeChunkStore, embedder: MiniLmEmbedder) -> dict[str, set[str]]:
    [vector] = embedder.embed(["policy"])
    found: dict[str, set[str]] = {}
    for chunk in store.query(vector, "acme", ["group:finance"], 100):
        found.setdefault(chunk.payload["uri"], set()).add(chunk.payload["text"])
    return found


def test_documents_run_side_by_side_and_each_documents_requests_keep_their_order(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, group = f"requests-{suffix}", f"dlq-{suffix}", f"ingest-{suffix}"
    ensure_topics(kafka_bootstrap, [topic, dlq], partitions=1)
    embedder = MiniLmEmbedder()
    counting = _OverlapCountingEmbedder(embedder)
    store = EdgeChunkStore(tmp_path / "edge", embedder.dimension)
    events = _DocumentEvents()
    pipeline = _FirstVersionsLate(IngestPipeline(store, counting, events))

    # The travel memo is written, deleted and written again among other documents: read side by side
    # without keeping one document's order, the delete could land last.
    requests = [
        _request("/docs/travel.md", "travel.md", _memo("travel", 1), ["finance"]),
        _request("/docs/hiring.md", "hiring.md", _memo("hiring"), ["finance"]),
        _request("/docs/travel.md", "", b"", [], action=events_pb2.INGEST_ACTION_DELETE),
        _request("/docs/laptops.md", "laptops.md", _memo("laptops"), ["finance"]),
        _request("/docs/travel.md", "travel.md", _memo("travel", 2), ["finance"]),
        _request("/docs/parking.md", "parking.md", _memo("parking"), ["finance"]),
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for request in requests:
        producer.send(topic, request)
    producer.flush()
    producer.close()

    consumer = IngestRequestConsumer(
        kafka_bootstrap,
        topic,
        group,
        dlq,
        pipeline,
        1024 * 1024,
        parallel=4,  # type: ignore[arg-type]
    )
    consumer.start()
    assert wait_until(lambda: consumer.handled == len(requests)), "all six requests should be handled"
    consumer.stop()

    assert counting.most_in_flight >= 2, "documents should be embedded side by side"
    found = _uris_in(store, embedder)
    assert set(found) == {"/docs/travel.md", "/docs/hiring.md", "/docs/laptops.md", "/docs/parking.md"}
    assert all("Version 2" in text for text in found["/docs/travel.md"]), "the last request should win"
    travel = [e.change for e in events.events if e.uri == "/docs/travel.md"]
    assert travel == [
        events_pb2.DOCUMENT_CHANGE_INGESTED,
        events_pb2.DOCUMENT_CHANGE_DELETED,
        events_pb2.DOCUMENT_CHANGE_INGESTED,
    ]
    offsets = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    assert offsets.committed(TopicPartition(topic, 0)) == len(requests)
    offsets.close()
    store.close()


def test_a_store_outage_is_waited_out_and_no_request_is_lost(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, group = f"requests-{suffix}", f"dlq-{suffix}", f"ingest-{suffix}"
    ensure_topics(kafka_bootstrap, [topic, dlq], partitions=1)
    embedder = MiniLmEmbedder()
    edge = EdgeChunkStore(tmp_path / "edge", embedder.dimension)
    store = _StoreWithOutage(edge)
    store.down.set()
    pipeline = IngestPipeline(store, embedder, _DocumentEvents())  # type: ignore[arg-type]

    subjects = ["travel", "hiring", "laptops"]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for subject in subjects:
        producer.send(topic, _request(f"/docs/{subject}.md", f"{subject}.md", _memo(subject), ["finance"]))
    producer.flush()
    producer.close()

    consumer = IngestRequestConsumer(
        kafka_bootstrap, topic, group, dlq, pipeline, 1024 * 1024, parallel=4, retry_after_s=0.2
    )
    consumer.start()
    assert wait_until(lambda: store.refused >= 2 * len(subjects)), "writes should be retried while it is down"
    assert consumer.handled == 0
    offsets = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    assert not offsets.committed(TopicPartition(topic, 0)), "nothing is committed before it is stored"
    store.down.clear()
    assert wait_until(lambda: consumer.handled == len(subjects)), "every request is handled once it is back"
    consumer.stop()

    assert set(_uris_in(edge, embedder)) == {f"/docs/{subject}.md" for subject in subjects}
    assert offsets.committed(TopicPartition(topic, 0)) == len(subjects)
    offsets.close()
    edge.close()
