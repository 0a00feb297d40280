"""Kafka plumbing: topics, and a publisher that never blocks its caller and never loses an event.

Every event is first written to an on-disk spool (SQLite), then a background thread sends the spool to
Kafka in order and deletes what the broker acknowledged (acks=all). A broker outage only grows the spool;
a crash loses nothing that ``publish`` returned for.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from google.protobuf.message import Message
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError, TopicAlreadyExistsError

from copilot.errors import DependencyUnavailable
from copilot.tracing import inject_headers

log = logging.getLogger(__name__)

EVENT_TYPE_HEADER = "copilot-event-type"
DEAD_LETTER_REASON_HEADER = "dead-letter-reason"


def group_consumer(bootstrap_servers: str, topic: str, group: str, max_poll_records: int) -> KafkaConsumer:
    """A consumer-group member that commits by hand, after the work a record asks for is durable."""
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Short enough that a restarted member rejoins in seconds rather than half a minute.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=max_poll_records,
    )


class DeadLetters:
    """Where records a consumer cannot use go, unchanged, with the reason in a header."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
        self._topic = topic

    def send(self, record: ConsumerRecord, reason: str) -> Any:
        """Returns the send's future; ``flush`` (or the future) says when the broker has it."""
        log.warning("dead-lettering %s/%d@%d: %s", record.topic, record.partition, record.offset, reason)
        headers = [*(record.headers or []), (DEAD_LETTER_REASON_HEADER, reason.encode())]
        return self._producer.send(self._topic, key=record.key, value=record.value, headers=headers)

    def flush(self, timeout_s: float = 30) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)


def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int = 3) -> None:
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    except KafkaError as exc:
        raise DependencyUnavailable(f"Kafka broker at {bootstrap_servers} is not reachable: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing
        ]
        if missing:
            # Another process may create them between our list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


class _Spool:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " key BLOB, value BLOB NOT NULL, headers BLOB NOT NULL)"
        )
        self._lock = threading.Lock()

    def append(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        packed = b"\n".join(k.encode() + b"\t" + v.hex().encode() for k, v in headers)
        with self._lock:
            self._db.execute(
                "INSERT INTO spool (topic, key, value, headers) VALUES (?, ?, ?, ?)",
                (topic, key, value, packed),
            )

    def oldest(self, limit: int) -> list[tuple[int, str, bytes | None, bytes, list[tuple[str, bytes]]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, key, value, headers FROM spool ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        out = []
        for seq, topic, key, value, packed in rows:
            headers = []
            for line in bytes(packed).split(b"\n") if packed else []:
                name, _, hexval = line.partition(b"\t")
                headers.append((name.decode(), bytes.fromhex(hexval.decode())))
            out.append((seq, topic, key, value, headers))
        return out

    def remove_through(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE seq <= ?", (seq,))

    def size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class EventPublisher:
    """Publishes protobuf events with trace context in headers; the module docstring gives the guarantees."""

    def __init__(self, bootstrap_servers: str, spool_path: Path, batch: int = 500) -> None:
        self._bootstrap = bootstrap_servers
        self._spool = _Spool(spool_path)
        self._batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._producer: KafkaProducer | None = None
        self._broker_down_logged = False
        self._thread = threading.Thread(target=self._run, name="event-publisher", daemon=True)
        self._thread.start()

    def publish(self, topic: str, key: str, event: Message) -> None:
        headers = [(EVENT_TYPE_HEADER, event.DESCRIPTOR.full_name.encode()), *inject_headers()]
        self._spool.append(topic, key.encode(), event.SerializeToString(), headers)
        self._idle.clear()
        self._wake.set()

    def pending(self) -> int:
        return self._spool.size()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Waits until the spool is empty; True if it emptied in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._spool.size() == 0:
                return True
            self._wake.set()
            time.sleep(0.05)
        return self._spool.size() == 0

    def close(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s + 5)
        if self._producer is not None:
            self._producer.close(timeout=5)
        self._spool.close()

    def _connect(self) -> KafkaProducer | None:
        try:
            return KafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
                retries=5,
                max_in_flight_requests_per_connection=1,
                request_timeout_ms=10_000,
                max_block_ms=10_000,
            )
        except KafkaError as exc:
            if not self._broker_down_logged:
                log.warning(
                    "Kafka at %s unreachable (%s); spooling events until it returns", self._bootstrap, exc
                )
                self._broker_down_logged = True
            return None

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            rows = self._spool.oldest(self._batch)
            if not rows:
                self._idle.set()
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            if self._producer is None:
                self._producer = self._connect()
                if self._producer is None:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
            try:
                sends = [
                    self._producer.send(topic, key=key, value=value, headers=headers)
                    for _seq, topic, key, value, headers in rows
                ]
                for future in sends:
                    future.get(timeout=30)
            except KafkaError as exc:
                log.warning("Kafka send failed (%s); %d events stay spooled", exc, self._spool.size())
                self._producer.close(timeout=1)
                self._producer = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            # A retry after a partial failure may resend a prefix; consumers deduplicate on event id.
            self._spool.remove_through(rows[-1][0])
            if self._broker_down_logged:
                log.info("Kafka at %s is back; spool drained", self._bootstrap)
                self._broker_down_logged = False
            backoff = 0.5


class TopicPublisher:
    """One topic of an ``EventPublisher``; the domain code's event port (``publish(event)``)."""

    def __init__(self, publisher: EventPublisher, topic: str, key: Callable[[Message], str]) -> None:
        self._publisher = publisher
        self._topic = topic
        self._key = key

    def publish(self, event: Message) -> None:
        self._publisher.publish(self._topic, self._key(event), event)
