"""The monitor's consumer against the real broker: flags stored, bad messages dead-lettered, no duplicates
after a restart that re-reads uncommitted messages."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer

from copilot.common.v1 import common_pb2
from copilot.events.v1 import events_pb2
from copilot.kafka import ensure_topics
from services.monitor.consumer import InteractionConsumer
from services.monitor.detectors import default_detectors
from services.monitor.flagstore import FlagStore


def _event(i: int, answer: str) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(
        event_id=f"evt-{i}",
        user_id="u1",
        question=f"question {i}",
        answer=answer,
        passages=[common_pb2.Passage(chunk_id="c1", text="The travel budget is 412,000 USD.")],
        cited_sources=[1] if "[1]" in answer else [],
    )


def _wait(predicate: object, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_consumer_flags_dead_letters_and_never_duplicates(kafka_bootstrap: str, tmp_path: Path) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, dlq, group = f"interactions-{suffix}", f"dlq-{suffix}", f"monitor-{suffix}"
    ensure_topics(kafka_bootstrap, [topic, dlq], partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, _event(1, "The travel budget is 412,000 USD [1].").SerializeToString())
    producer.send(topic, _event(2, "Call me at +1 415 555 0100 or hr-help@acme.example.").SerializeToString())
    producer.send(topic, b"\xff\xfe not a protobuf")
    producer.flush()

    store = FlagStore(tmp_path / "monitor.sqlite")
    consumer = InteractionConsumer(kafka_bootstrap, topic, group, dlq, store, default_detectors())
    consumer.start()
    assert _wait(lambda: len(store.list_interactions()) == 2), "both interactions should be stored"
    consumer.stop()
    flags = store.list_flags()
    pii = [f for f in flags if f.detector == "pii"]
    assert pii and pii[0].interaction_id == "evt-2"
    assert all(f.interaction_id != "evt-1" or f.detector != "pii" for f in flags)

    dead = KafkaConsumer(
        dlq,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
        group_id=f"dlq-reader-{suffix}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    records = []
    for record in dead:
        records.append(record)
        break
    dead.close()
    assert records and records[0].value == b"\xff\xfe not a protobuf"
    assert b"undecodable" in dict(records[0].headers)["dead-letter-reason"]

    # A replay of an already-stored event (as after a crash before commit) must not add flags.
    flag_count = len(store.list_flags(limit=1000))
    producer.send(topic, _event(2, "Call me at +1 415 555 0100 or hr-help@acme.example.").SerializeToString())
    producer.send(topic, _event(3, "No sources needed.").SerializeToString())
    producer.flush()
    restarted = InteractionConsumer(kafka_bootstrap, topic, group, dlq, store, default_detectors())
    restarted.start()
    assert _wait(lambda: len(store.list_interactions()) == 3), "the new event after restart should be stored"
    restarted.stop()
    new_flags = store.list_flags(limit=1000)
    assert len([f for f in new_flags if f.interaction_id == "evt-2"]) == len(
        [f for f in flags if f.interaction_id == "evt-2"]
    )
    assert len(new_flags) > flag_count
    producer.close()
    store.close()
