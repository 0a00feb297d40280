"""Waiting on a consumer and reading back what reached a topic, for tests against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord


def wait_until(predicate: Callable[[], bool], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def read_from_start(bootstrap: str, topic: str, count: int, timeout_s: float = 30) -> list[ConsumerRecord]:
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
