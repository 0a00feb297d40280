"""Takes ingest and delete requests from a Kafka topic and runs them through the pipeline.

Up to ``parallel`` records are read at a time and their documents run side by side (one document's
embedding keeps one core busy); requests for the same document run in the order they arrived. The
offsets are committed once every record read is durable: its chunks written, a failed-change event
spooled, or the record dead-lettered. A crash therefore re-reads at most the records in hand, and the
pipeline's content and access hashes make those re-reads no-ops. A record that fails because a backing
system is down is read again after a pause rather than given up, and so is everything after it in its
partition, as are the later records of its document (from any partition): a partition's committed
position never passes a record that was not handled. A record that cannot be read (no value, not an
``IngestRequestEvent``) is dead-lettered, one too large to dead-letter as it is goes there as a reference
to where it lies, and nothing unexpected ends the consumer's thread: it logs, reads the records in hand
again after a pause, and carries on. Should the thread end all the same (a ``BaseException``, such as a
native extension's panic), it says so once at error level and calls ``on_death``, which the server uses
to turn its health NOT_SERVING.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.protobuf.message import DecodeError
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from opentelemetry import context as otel_context
from opentelemetry import trace

from copilot.errors import DependencyUnavailable
from copilot.events.v1 import events_pb2
from copilot.kafka import DeadLetters, group_consumer
from copilot.logs import log_fields
from copilot.tracing import extract_headers
from services.ingest.access import Access
from services.ingest.errors import IngestError
from services.ingest.pipeline import MAX_URI_CHARS, IngestPipeline

log = logging.getLogger(__name__)
tracer = trace.get_tracer("copilot-ingest")


class _Retry(Exception):
    """The record could not be handled for a reason outside it; read it again after a pause."""


class IngestRequestConsumer:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group: str,
        dead_letter_topic: str,
        pipeline: IngestPipeline,
        max_document_bytes: int,
        parallel: int = 1,
        retry_after_s: float = 5.0,
        kafka_options: Mapping[str, Any] | None = None,
        on_death: Callable[[], None] = lambda: None,
    ) -> None:
        """``kafka_options``: the connection's security, from ``KafkaSettings.client_options``.
        ``on_death`` is called if the consumer's thread ends without ``stop``."""
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, not {parallel}")
        options = dict(kafka_options or {})
        # Embedding a large document takes a while; fetching more than can run would only age in the buffer.
        self._consumer = group_consumer(bootstrap_servers, topic, group, max_poll_records=parallel, **options)
        self._workers = ThreadPoolExecutor(parallel, thread_name_prefix="ingest-request")
        self._dead_letters = DeadLetters(bootstrap_servers, dead_letter_topic, **options)
        self._pipeline = pipeline
        self._max_bytes = max_document_bytes
        self._retry_after_s = retry_after_s
        self._stop = threading.Event()
        self._on_death = on_death
        self._thread = threading.Thread(
            target=self._run_or_report, name="ingest-request-consumer", daemon=True
        )
        self.handled = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        # The records in hand are finished first; the consumer is not thread-safe, so close it after.
        self._thread.join(60)
        self._workers.shutdown()
        self._consumer.close()
        self._dead_letters.close()

    def _run_or_report(self) -> None:
        try:
            self._run()
        except BaseException:
            log.exception("ingest request consumer thread died; ingest requests are no longer read")
            self._on_death()

    def _run(self) -> None:
        # Nothing may end this thread: no request would be read again until the service restarts.
        while not self._stop.is_set():
            records: list[ConsumerRecord] = []
            try:
                records = [r for batch in self._consumer.poll(timeout_ms=500).values() for r in batch]
                if records:
                    self._handle_together(records)
            except Exception:
                log.exception(
                    "ingest request consumer failed on %d records in hand; reading them again in %.0f s",
                    len(records),
                    self._retry_after_s,
                )
                self._read_again(_first_offsets(records))
                self._stop.wait(self._retry_after_s)

    def _read_again(self, offsets: Mapping[TopicPartition, int]) -> None:
        for partition, offset in offsets.items():
            try:
                self._consumer.seek(partition, offset)
            except Exception as exc:  # no longer assigned: its new owner reads from the committed offset
                log.warning(
                    "cannot rewind %s/%d to %d: %s", partition.topic, partition.partition, offset, exc
                )

    def _handle_together(self, records: list[ConsumerRecord]) -> None:
        # Requests for one document share a lane and keep their order; lanes run side by side. A lane may
        # hold records of several partitions (the same document keyed differently, or partitions added).
        lanes: dict[Hashable, list[_Decoded]] = {}
        for record in records:
            decoded = _decode(record)
            request = decoded[1]
            if isinstance(request, str):
                lane: Hashable = (record.topic, record.partition, record.offset)
            else:
                lane = (request.tenant, request.uri)
            lanes.setdefault(lane, []).append(decoded)
        unhandled: list[ConsumerRecord] = []
        done = 0
        for handled, not_handled in self._workers.map(self._handle_in_order, lanes.values()):
            done += handled
            unhandled.extend(not_handled)
        # Each partition is read again from its first record not handled: the one that stopped its lane,
        # or one after it in the lane, in whichever partition that lies.
        read_again = _first_offsets(unhandled)
        for partition, offset in read_again.items():
            # Later records of the partition that did succeed are read again too; that is a no-op.
            self._consumer.seek(partition, offset)
        try:
            self._consumer.commit()
        except KafkaError as exc:
            # A rebalance took a partition away; its new owner re-reads the records harmlessly.
            log.warning("committing ingest request offsets failed: %s", exc)
        self.handled += done
        if read_again:
            self._stop.wait(self._retry_after_s)

    def _handle_in_order(self, records: list[_Decoded]) -> tuple[int, list[ConsumerRecord]]:
        """Handles one document's records in turn; how many were handled, and those that were not (the
        one that stopped the lane and every one after it), to be read again."""
        for handled, (record, request) in enumerate(records):
            try:
                self._handle_or_dead_letter(record, request)
            except Exception as exc:  # _Retry, or a dead letter that could not be sent
                log.warning(
                    "ingest request %s/%d@%d not handled (%s); retrying in %.0f s",
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                    self._retry_after_s,
                )
                return handled, [r for r, _ in records[handled:]]
        return len(records), []

    def _handle_or_dead_letter(
        self, record: ConsumerRecord, request: events_pb2.IngestRequestEvent | str
    ) -> None:
        try:
            self._handle(record, request)
        except _Retry:
            raise
        except Exception as exc:
            # A bug outside the pipeline (tracing, a header) must not block the partition either.
            log.exception("ingest request %s/%d@%d failed", record.topic, record.partition, record.offset)
            self._dead_letter(record, f"handling the request failed unexpectedly: {exc!r}")

    def _handle(self, record: ConsumerRecord, request: events_pb2.IngestRequestEvent | str) -> None:
        # A header may carry no value; it cannot carry trace context either.
        carried = [(k, v) for k, v in record.headers or () if isinstance(v, bytes)]
        token = otel_context.attach(extract_headers(carried))
        try:
            with tracer.start_as_current_span("ingest.request", kind=trace.SpanKind.CONSUMER):
                if isinstance(request, str):
                    self._dead_letter(record, request)
                    return
                problem = _malformed(request)
                if problem:
                    self._dead_letter(record, problem)
                    return
                try:
                    self._apply(request)
                except DependencyUnavailable as exc:
                    raise _Retry(str(exc)) from exc
                except Exception as exc:
                    # A bug on one document must not block the partition; the dead letter keeps it.
                    log.exception("ingest request for %s failed", request.uri)
                    self._dead_letter(record, f"ingest failed unexpectedly: {exc!r}")
        finally:
            otel_context.detach(token)

    def _apply(self, request: events_pb2.IngestRequestEvent) -> None:
        about = {"request_id": request.event_id, "requested_by": request.requested_by, "uri": request.uri}
        if request.action == events_pb2.INGEST_ACTION_DELETE:
            document_id, deleted = self._pipeline.delete(request.tenant, request.uri)
            log.info(
                "deleted %s on request",
                request.uri,
                extra=log_fields(**about, document_id=document_id, deleted_chunks=deleted),
            )
            return
        a = request.access
        access = Access(
            tenant=request.tenant,
            groups=tuple(a.groups),
            users=tuple(a.users),
            public=a.public,
            classification=a.classification or "internal",
        )
        refusal = ""
        if a.tenant and a.tenant != request.tenant:
            refusal = f"access names tenant {a.tenant!r} but the request is for tenant {request.tenant!r}"
        elif access.is_empty():
            refusal = "no readers given (groups, users or public); refusing a document nobody may read"
        elif len(request.uri) > MAX_URI_CHARS:
            refusal = f"the uri is {len(request.uri):,} characters; the limit is {MAX_URI_CHARS:,}"
        elif len(request.content) > self._max_bytes:
            size, limit = len(request.content), self._max_bytes
            refusal = f"it is {size:,} bytes, over the {limit:,}-byte limit for one document"
        if refusal:
            self._pipeline.refuse(request.uri, access, refusal)
            log.warning("refused ingest request for %s: %s", request.uri, refusal, extra=log_fields(**about))
            return
        try:
            filename = request.filename or request.uri
            result = self._pipeline.ingest(request.uri, filename, request.content, access)
        except IngestError as exc:
            # The pipeline has already published the failure with this reason.
            log.warning("ingest request for %s failed: %s", request.uri, exc, extra=log_fields(**about))
            return
        log.info(
            "ingest request for %s: %s",
            request.uri,
            result.outcome.value,
            extra=log_fields(**about, document_id=result.document_id, chunks=result.chunk_count),
        )

    def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        # Committed right after, so the broker must have the dead letter before we move on.
        try:
            self._dead_letters.deliver(record, reason)
        except KafkaError as exc:
            raise _Retry(f"dead-letter topic unreachable: {exc}") from exc


#: A record and the request it holds, or why it holds none.
_Decoded = tuple[ConsumerRecord, events_pb2.IngestRequestEvent | str]


def _decode(record: ConsumerRecord) -> _Decoded:
    if record.value is None:
        return record, "IngestRequestEvent without a value (a null-value, tombstone, record)"
    request = events_pb2.IngestRequestEvent()
    try:
        request.ParseFromString(record.value)
    except (DecodeError, TypeError, ValueError) as exc:
        return record, f"undecodable IngestRequestEvent: {exc}"
    return record, request


def _first_offsets(records: list[ConsumerRecord]) -> dict[TopicPartition, int]:
    """Each partition's lowest offset among ``records``."""
    first: dict[TopicPartition, int] = {}
    for record in records:
        partition = TopicPartition(record.topic, record.partition)
        first[partition] = min(first.get(partition, record.offset), record.offset)
    return first


def _malformed(request: events_pb2.IngestRequestEvent) -> str:
    """Why a request names no document to act on (and so has nobody to report a failure to), or ''."""
    if request.action == events_pb2.INGEST_ACTION_UNSPECIFIED:
        return "IngestRequestEvent without an action"
    if not request.tenant:
        return "IngestRequestEvent without a tenant"
    if not request.uri:
        return "IngestRequestEvent without a uri"
    return ""
