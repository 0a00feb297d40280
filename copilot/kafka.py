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
from kafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError

from copilot.errors import DependencyUnavailable
from copilot.tracing import inject_headers

log = logging.getLogger(__name__)

EVENT_TYPE_HEADER = "copilot-event-type"
DEAD_LETTER_REASON_HEADER = "dead-letter-reason"


def group_consumer(
    bootstrap_servers: str, topic: str, group: str, max_poll_records: int, **client_options: Any
) -> KafkaConsumer:
    """A consumer-group member that commits by hand, after the work a record asks for is durable.

    ``client_options`` carry the connection's security (``KafkaSettings.client_options``), as for every
    client made here.
    """
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        **client_options,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Short enough that a restarted member rejoins in seconds rather than half a minute.
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_records=max_poll_records,
    )


#: Above this, a key or the headers are left out of a dead letter that stands in for its record.
_REFERENCE_KEEPS_BYTES = 16 * 1024


class DeadLetters:
    """Where records a consumer cannot use go, unchanged, with the reason in a header.

    A record Kafka will not take back as it is (the reason header pushes one near the size limit over it;
    one with neither key nor value cannot be produced) goes as a reference to where it lies instead:
    waiting for it would block its partition for good.
    """

    def __init__(self, bootstrap_servers: str, topic: str, **client_options: Any) -> None:
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", **client_options)
        self._topic = topic
        self._in_flight: list[tuple[ConsumerRecord, str, Any]] = []
        self._lock = threading.Lock()

    def deliver(self, record: ConsumerRecord, reason: str, timeout_s: float = 30) -> None:
        """Sends one dead letter and returns once the broker has it; raises KafkaError if it does not."""
        self._confirm(record, reason, self._send(record, reason), timeout_s)

    def send(self, record: ConsumerRecord, reason: str) -> None:
        """Sends a dead letter; ``flush`` says when the broker has it."""
        future = self._send(record, reason)
        with self._lock:
            self._in_flight.append((record, reason, future))

    def flush(self, timeout_s: float = 30) -> None:
        """Returns once the broker has every dead letter ``send`` sent; raises KafkaError if it does not, so
        the caller does not commit past a record that went nowhere."""
        self._producer.flush(timeout=timeout_s)
        with self._lock:
            in_flight, self._in_flight = self._in_flight, []
        for record, reason, future in in_flight:
            self._confirm(record, reason, future, timeout_s)

    def close(self) -> None:
        self._producer.close(timeout=5)

    def _send(self, record: ConsumerRecord, reason: str) -> Any:
        log.warning("dead-lettering %s: %s", _coordinates(record), reason)
        headers = [*(record.headers or []), (DEAD_LETTER_REASON_HEADER, reason.encode())]
        try:
            return self._producer.send(self._topic, key=record.key, value=record.value, headers=headers)
        except (MessageSizeTooLargeError, TypeError, ValueError) as exc:
            return self._send_reference(record, reason, exc)

    def _confirm(self, record: ConsumerRecord, reason: str, future: Any, timeout_s: float) -> None:
        try:
            future.get(timeout=timeout_s)
        except MessageSizeTooLargeError as exc:  # the broker's limit, below the producer's
            self._send_reference(record, reason, exc).get(timeout=timeout_s)

    def _send_reference(self, record: ConsumerRecord, reason: str, exc: Exception) -> Any:
        log.error(
            "%s cannot be dead-lettered as it is (%s); dead-lettering a reference to it instead. Its value"
            " (%s bytes) stays only in %s until retention removes it",
            _coordinates(record),
            exc,
            "no" if record.value is None else f"{len(record.value):,}",
            record.topic,
        )
        key = (
            record.key
            if isinstance(record.key, bytes) and len(record.key) <= _REFERENCE_KEEPS_BYTES
            else None
        )
        headers = list(record.headers or ())
        well_formed = all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)
        if not well_formed or sum(len(k) + len(v) for k, v in headers) > _REFERENCE_KEEPS_BYTES:
            headers = []
        size = "no value" if record.value is None else f"{len(record.value):,} bytes"
        value = f"not copied: the record at {_coordinates(record)} ({size})".encode()
        note = f"{reason} [{_coordinates(record)} not copied: {exc}]"
        headers.append((DEAD_LETTER_REASON_HEADER, note.encode()))
        return self._producer.send(self._topic, key=key, value=value, headers=headers)


def _coordinates(record: ConsumerRecord) -> str:
    return f"{record.topic}/{record.partition}@{record.offset}"


def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], partitions: int = 3, **client_options: Any
) -> None:
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000, **client_options
        )
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
    def __init__(self, path: Path, max_bytes: int = 0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if max_bytes:
            # Past this an insert fails as "database or disk is full", as on a full disk: the caller is
            # told UNAVAILABLE and nothing already spooled is touched.
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
            " key BLOB, value BLOB NOT NULL, headers BLOB NOT NULL)"
        )
        # Events Kafka will never take (over its size limit), kept for the operator instead of blocking
        # every event behind them.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rejected (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, key BLOB,"
            " value BLOB NOT NULL, headers BLOB NOT NULL, reason TEXT NOT NULL)"
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

    def reject(self, seq: int, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO rejected SELECT seq, topic, key, value, headers, ? FROM spool"
                " WHERE seq = ?",
                (reason, seq),
            )
            self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,))

    def rejected(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()[0])

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

    def __init__(
        self,
        bootstrap_servers: str,
        spool_path: Path,
        batch: int = 500,
        spool_max_bytes: int = 0,
        **client_options: Any,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_options = client_options
        self._spool_path = spool_path
        self._spool = _Spool(spool_path, spool_max_bytes)
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
        try:
            self._spool.append(topic, key.encode(), event.SerializeToString(), headers)
        except sqlite3.Error as exc:  # "database or disk is full", a read-only or vanished volume
            raise DependencyUnavailable(f"cannot write the event spool {self._spool_path}: {exc}") from exc
        self._idle.clear()
        self._wake.set()

    def pending(self) -> int:
        return self._spool.size()

    def rejected(self) -> int:
        """Events set aside because Kafka refuses their size; they stay in the spool file's
        ``rejected`` table."""
        return self._spool.rejected()

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
        self._discard_producer()
        self._spool.close()

    def _connect(self) -> KafkaProducer | None:
        try:
            return KafkaProducer(
                bootstrap_servers=self._bootstrap,
                **self._client_options,
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
        # Nothing may end this thread: the events would stay spooled, unsent, until the process restarts.
        while not self._stop.is_set():
            try:
                self._send_spool()
            except Exception:
                log.exception("event publisher failed; %d events stay spooled, retrying", self._spool.size())
                self._discard_producer()
                self._stop.wait(5.0)

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=1)
        except KafkaError:
            # close() flushes first and raises over batches the broker never acknowledged. Their events
            # are still in the spool, so the producer's sender thread is stopped without them.
            sender = getattr(producer, "_sender", None)
            if sender is not None:
                sender.force_close()

    def _send_spool(self) -> None:
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
                sends = []
                for seq, topic, key, value, headers in rows:
                    try:
                        future = self._producer.send(topic, key=key, value=value, headers=headers)
                    except MessageSizeTooLargeError as exc:
                        self._reject(seq, topic, exc)
                        continue
                    sends.append((seq, topic, future))
                for seq, topic, future in sends:
                    try:
                        future.get(timeout=30)
                    except MessageSizeTooLargeError as exc:  # the broker's limit is below the producer's
                        self._reject(seq, topic, exc)
            except KafkaError as exc:
                log.warning("Kafka send failed (%s); %d events stay spooled", exc, self._spool.size())
                self._discard_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            # A retry after a partial failure may resend a prefix; consumers deduplicate on event id.
            self._spool.remove_through(rows[-1][0])
            if self._broker_down_logged:
                log.info("Kafka at %s is back; spool drained", self._bootstrap)
                self._broker_down_logged = False
            backoff = 0.5

    def _reject(self, seq: int, topic: str, exc: KafkaError) -> None:
        log.error(
            "event %d for %s is too large for Kafka (%s); set aside in the spool's rejected table",
            seq,
            topic,
            exc,
        )
        self._spool.reject(seq, str(exc))


class TopicPublisher:
    """One topic of an ``EventPublisher``; the domain code's event port (``publish(event)``)."""

    def __init__(self, publisher: EventPublisher, topic: str, key: Callable[[Message], str]) -> None:
        self._publisher = publisher
        self._topic = topic
        self._key = key

    def publish(self, event: Message) -> None:
        self._publisher.publish(self._topic, self._key(event), event)
