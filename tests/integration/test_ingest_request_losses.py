"""Ingest requests from Kafka against the real broker, where a record could once be lost or stop the
consumer: a tombstone, an unexpected failure in the consumer's loop, one document's requests in two
partitions when the first waits out an outage, and a record too large to dead-letter as it is."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import MessageSizeTooLargeError

import services.ingest.requests as requests_module
from copilot.common.v1 import common_pb2
from copilot.errors import DependencyUnavailable
from copilot.events.v1 import events_pb2
from copilot.kafka import DEAD_LETTER_REASON_HEADER, ensure_topics
from services.ingest.requests import IngestRequestConsumer
from tests.integration.kafka_checks import read_from_start, wait_until


def _committed(bootstrap: str, group: str, topic: str, partitions: int = 1) -> dict[int, int | None]:
    offsets = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: offsets.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        offsets.close()


def _request(text: str, uri: str = "/docs/memo.md") -> bytes:
    return events_pb2.IngestRequestEvent(
        event_id=str(uuid.uuid4()),
        action=events_pb2.INGEST_ACTION_INGEST,
        uri=uri,
        filename="memo.md",
        content=text.encode(),
        access=common_pb2.AccessControl(groups=["finance"]),
        tenant="acme",
        requested_by="sync-bot",
    ).SerializeToString()


class _Result:
    class outcome:  # noqa: N801 - shaped like IngestResult.outcome
        value = "created"

    document_id = "d"
    chunk_count = 1


class _Pipeline:
    """Records what it was asked to ingest; the first ``outages`` ingests find the store down."""

    def __init__(self, outages: int = 0) -> None:
        self.applied: list[str] = []
        self._outages = outages
        self._lock = threading.Lock()

    def ingest(self, uri: str, filename: str, content: bytes, access: Any) -> _Result:
        with self._lock:
            if self._outages:
                self._outages -= 1
                raise DependencyUnavailable("vector store ReplaceDocument failed: connection refused")
            self.applied.append(content.decode())
        return _Result()

    def refuse(self, uri: str, access: Any, reason: str) -> None:
        raise AssertionError(f"nothing here should be refused: {uri}: {reason}")

    def delete(self, tenant: str, uri: str) -> tuple[str, int]:
        raise AssertionError("nothing here is deleted")


def _topics(bootstrap: str, partitions: int = 1) -> tuple[str, str, str]:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, group = f"requests-{suffix}", f"dlq-{suffix}", f"ingest-{suffix}"
    ensure_topics(bootstrap, [topic], partitions=partitions)
    ensure_topics(bootstrap, [dlq], partitions=1)
    return topic, dlq, group


def _consumer(bootstrap: str, topic: str, group: str, dlq: str, pipeline: _Pipeline) -> IngestRequestConsumer:
    return IngestRequestConsumer(
        bootstrap,
        topic,
        group,
        dlq,
        pipeline,  # type: ignore[arg-type]
        10 * 1024 * 1024,
        parallel=4,
        retry_after_s=0.5,
    )


def test_a_tombstone_is_dead_lettered_and_the_requests_after_it_are_ingested(kafka_bootstrap: str) -> None:
    topic, dlq, group = _topics(kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, key=b"/docs/memo.md", value=None)
    producer.send(topic, key=b"/docs/memo.md", value=_request("after the tombstone"))
    producer.flush()
    producer.close()

    pipeline = _Pipeline()
    consumer = _consumer(kafka_bootstrap, topic, group, dlq, pipeline)
    consumer.start()
    try:
        assert wait_until(lambda: consumer.handled == 2), "the tombstone and the request after it are handled"
        assert consumer._thread.is_alive()
    finally:
        consumer.stop()
    assert pipeline.applied == ["after the tombstone"]
    [dead] = read_from_start(kafka_bootstrap, dlq, 1)
    assert dead.key == b"/docs/memo.md" and dead.value is None
    assert b"without a value" in dict(dead.headers)[DEAD_LETTER_REASON_HEADER]
    assert _committed(kafka_bootstrap, group, topic) == {0: 2}


def test_an_unexpected_failure_does_not_end_the_consumer(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, dlq, group = _topics(kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, _request("first", uri="/docs/first.md"))
    producer.send(topic, _request("second", uri="/docs/second.md"))
    producer.flush()

    # Checking the first request fails every time, as a bug outside the pipeline would.
    malformed = requests_module._malformed

    def failing_on_first(request: events_pb2.IngestRequestEvent) -> str:
        if request.uri == "/docs/first.md":
            raise RuntimeError("checking broke")
        return malformed(request)

    monkeypatch.setattr(requests_module, "_malformed", failing_on_first)
    pipeline = _Pipeline()
    consumer = _consumer(kafka_bootstrap, topic, group, dlq, pipeline)
    # And the first commit fails in a way nobody foresaw.
    commit = consumer._consumer.commit
    commit_failures = [RuntimeError("commit broke")]

    def commit_failing_once(*args: Any, **kwargs: Any) -> Any:
        if commit_failures:
            raise commit_failures.pop()
        return commit(*args, **kwargs)

    consumer._consumer.commit = commit_failing_once  # type: ignore[method-assign]
    consumer.start()
    try:
        assert wait_until(lambda: not commit_failures), "the first commit was tried"
        producer.send(topic, _request("third", uri="/docs/third.md"))
        producer.flush()
        producer.close()
        assert wait_until(lambda: _committed(kafka_bootstrap, group, topic) == {0: 3}), "consumption goes on"
        assert consumer._thread.is_alive()
    finally:
        consumer.stop()
        producer.close()
    # The record whose handling failed is dead-lettered (again, when read again after the failed commit);
    # the others are ingested (again: a no-op for the real pipeline).
    assert set(pipeline.applied) == {"second", "third"}
    dead = read_from_start(kafka_bootstrap, dlq, 1)
    assert dead and all(b"checking broke" in dict(d.headers)[DEAD_LETTER_REASON_HEADER] for d in dead)
    assert {events_pb2.IngestRequestEvent.FromString(d.value).uri for d in dead} == {"/docs/first.md"}


def test_one_documents_requests_in_two_partitions_are_all_ingested_after_an_outage(
    kafka_bootstrap: str,
) -> None:
    topic, dlq, group = _topics(kafka_bootstrap, partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, key=b"k", value=_request("request in partition 0"), partition=0)
    producer.send(topic, key=b"k", value=_request("request in partition 1"), partition=1)
    producer.flush()
    producer.close()

    # Whichever of the two is read first finds the store down; the other sits behind it in its lane.
    pipeline = _Pipeline(outages=1)
    consumer = _consumer(kafka_bootstrap, topic, group, dlq, pipeline)
    consumer.start()
    try:
        assert wait_until(lambda: _committed(kafka_bootstrap, group, topic, 2) == {0: 1, 1: 1})
        assert wait_until(lambda: len(set(pipeline.applied)) == 2, timeout_s=10), (
            f"both requests are ingested before their offsets are committed, not only {pipeline.applied}"
        )
    finally:
        consumer.stop()


def test_a_record_too_large_to_dead_letter_goes_as_a_reference_and_does_not_block(
    kafka_bootstrap: str,
) -> None:
    topic, dlq, group = _topics(kafka_bootstrap)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    # Garbage as near the producer's 1 MiB limit as it takes: the dead-letter reason header pushes it over.
    size = 1024 * 1024
    while True:
        try:
            producer.send(topic, key=b"big", value=b"\xff" * size).get(timeout=30)
            break
        except MessageSizeTooLargeError:
            size -= 8
    producer.send(topic, _request("after the big one")).get(timeout=30)
    producer.close()

    pipeline = _Pipeline()
    consumer = _consumer(kafka_bootstrap, topic, group, dlq, pipeline)
    consumer.start()
    try:
        assert wait_until(lambda: _committed(kafka_bootstrap, group, topic) == {0: 2}), (
            "the large record must not block its partition"
        )
    finally:
        consumer.stop()
    assert pipeline.applied == ["after the big one"]
    [dead] = read_from_start(kafka_bootstrap, dlq, 1)
    assert dead.key == b"big"
    assert f"{topic}/0@0".encode() in dead.value and f"{size:,} bytes".encode() in dead.value
    reason = dict(dead.headers)[DEAD_LETTER_REASON_HEADER]
    assert reason.startswith(b"undecodable IngestRequestEvent") and f"{topic}/0@0".encode() in reason
