"""The spooling publisher against the real broker, including an outage."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from opentelemetry import trace

from copilot.broker import start_tansu
from copilot.errors import DependencyUnavailable
from copilot.events.v1 import events_pb2
from copilot.kafka import EventPublisher, ensure_topics
from tests.conftest import free_port


def _consume(
    bootstrap: str, topic: str, expected: int
) -> list[tuple[events_pb2.DocumentEvent, dict[str, bytes]]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4().hex[:6]}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=20_000,
    )
    out = []
    for record in consumer:
        event = events_pb2.DocumentEvent()
        event.ParseFromString(record.value)
        out.append((event, dict(record.headers)))
        if len(out) == expected:
            break
    consumer.close()
    return out


def test_events_arrive_in_order_with_trace_context(
    kafka_bootstrap: str, tmp_path: Path, span_exporter: object
) -> None:
    topic = f"docs-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    publisher = EventPublisher(kafka_bootstrap, tmp_path / "spool.sqlite")
    with trace.get_tracer("test").start_as_current_span("ingest") as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
        for i in range(20):
            publisher.publish(topic, "doc", events_pb2.DocumentEvent(event_id=str(i), uri=f"u{i}"))
    assert publisher.flush(30)
    publisher.close()
    received = _consume(kafka_bootstrap, topic, 20)
    assert [e.event_id for e, _ in received] == [str(i) for i in range(20)]
    headers = received[0][1]
    assert trace_id in headers["traceparent"].decode()
    assert headers["copilot-event-type"] == b"copilot.events.v1.DocumentEvent"


def test_broker_outage_spools_then_replays_everything(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    publisher = EventPublisher(bootstrap, tmp_path / "spool.sqlite")
    for i in range(50):
        publisher.publish("copilot.documents.v1", "doc", events_pb2.DocumentEvent(event_id=str(i)))
    assert publisher.pending() == 50, "nothing may be lost or sent while the broker is down"
    broker = start_tansu(port, tmp_path / "tansu.log")
    try:
        ensure_topics(bootstrap, ["copilot.documents.v1"], partitions=1)
        assert publisher.flush(60), f"{publisher.pending()} events still spooled"
        publisher.close()
        received = _consume(bootstrap, "copilot.documents.v1", 50)
        ids = [e.event_id for e, _ in received]
        assert ids[:50] == [str(i) for i in range(50)]
    finally:
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()


def test_spool_survives_a_restart_of_the_publisher(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    first = EventPublisher(bootstrap, tmp_path / "spool.sqlite")
    for i in range(5):
        first.publish("t", "k", events_pb2.DocumentEvent(event_id=str(i)))
    first.close(timeout_s=0.1)
    second = EventPublisher(bootstrap, tmp_path / "spool.sqlite")
    assert second.pending() == 5
    second.close(timeout_s=0.1)


def test_a_spool_at_its_size_limit_refuses_new_events_and_keeps_the_rest(tmp_path: Path) -> None:
    """On Kubernetes the spool lives on an emptyDir with a sizeLimit, and a pod whose emptyDir outgrows it
    is evicted with its spool: the publisher must stop short of that and say so."""
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens: every event stays spooled
    publisher = EventPublisher(bootstrap, tmp_path / "spool.sqlite", spool_max_bytes=256 * 1024)
    event = events_pb2.DocumentEvent(event_id="e", reason="x" * 2000)
    accepted = 0
    with pytest.raises(DependencyUnavailable, match=r"cannot write the event spool .*full"):
        for _ in range(1000):
            publisher.publish("t", "k", event)
            accepted += 1
    assert 50 < accepted < 1000
    assert publisher.pending() == accepted, "every event publish returned for is still spooled"
    assert (tmp_path / "spool.sqlite").stat().st_size <= 256 * 1024
    publisher.close(timeout_s=0.1)
