"""Ingest requests from Kafka against the real broker, embedder and Qdrant's engine: good documents stored,
bad ones reported as failed changes, garbage dead-lettered, and a redelivery after a restart a no-op."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from copilot.common.v1 import common_pb2
from copilot.embedding import MiniLmEmbedder
from copilot.events.v1 import events_pb2
from copilot.kafka import DEAD_LETTER_REASON_HEADER, EventPublisher, TopicPublisher, ensure_topics
from copilot.vectorstore.edge import EdgeChunkStore
from services.ingest.pipeline import IngestPipeline
from services.ingest.requests import IngestRequestConsumer

MEMO = b"""# Travel budget

The Q3 2026 travel budget for the finance team is 412,000 USD, approved by the CFO in June.
"""


def _wait(predicate: Callable[[], bool], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _read(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> list[ConsumerRecord]:
    """Reads ``count`` records from the start of a one-partition topic, without joining a group."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    reader.assign([partition])
    reader.seek_to_beginning(partition)
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        for batch in reader.poll(timeout_ms=500).values():
            records.extend(batch)
    reader.close()
    return records


def _request(uri: str, filename: str, content: bytes, groups: list[str]) -> bytes:
    return events_pb2.IngestRequestEvent(
        event_id=str(uuid.uuid4()),
        action=events_pb2.INGEST_ACTION_INGEST,
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
    assert _wait(lambda: consumer.handled == 4), "all four requests should be handled"
    consumer.stop()

    chunks = store.count()
    assert chunks > 0
    [vector] = embedder.embed(["What is the Q3 2026 travel budget?"])
    found = store.query(vector, "acme", ["group:finance"], 3)
    assert [c.payload["uri"] for c in found] == ["/docs/travel.md"]
    assert store.query(vector, "acme", ["group:engineering", "everyone"], 3) == []

    assert publisher.flush()
    events = []
    for record in _read(kafka_bootstrap, documents, 3):
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

    [dead] = _read(kafka_bootstrap, dlq, 1)
    assert dead.value == b"\xff\xfe not a protobuf"
    assert dict(dead.headers)[DEAD_LETTER_REASON_HEADER].startswith(b"undecodable")

    # As after a crash between the store write and the commit: the same request arrives again.
    producer.send(topic, good)
    producer.flush()
    producer.close()
    restarted = IngestRequestConsumer(kafka_bootstrap, topic, group, dlq, pipeline, 1024 * 1024)
    restarted.start()
    assert _wait(lambda: restarted.handled == 1), "the redelivered request should be handled"
    restarted.stop()
    offsets = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False)
    assert offsets.committed(TopicPartition(topic, 0)) == 5, "only the new record was read after restart"
    offsets.close()
    assert restarted.handled == 1
    assert store.count() == chunks
    assert publisher.flush()
    # An unchanged document publishes no change, so the documents topic holds only the first three events.
    assert len(_read(kafka_bootstrap, documents, 4, timeout_s=3)) == 3

    publisher.close()
    store.close()
