"""Reads interaction and feedback events from Kafka as one consumer group and stores flags.

Interactions go through the inline detectors; negative or reported feedback becomes a flag on its
interaction. A whole poll's interactions are stored in one transaction of a few statements, and offsets are
committed only after that; the store ignores event ids it already has, so a crash or a replay neither loses
nor duplicates flags. Only then do the newly stored interactions go to the sampled tier and their findings
to the alerts, so neither ever sees an event that a crash could still take back; if the offset commit fails
after the store's, the retry hands on what that try stored. A record that cannot be
decoded goes to the dead-letter topic with the reason. A batch the store refuses for what it holds (a data
error) is stored again a record at a time, and the record refused on its own is dead-lettered too, so it
cannot block the others forever; any other store failure (the database down) rewinds the batch and retries
it. Dead letters are sent once the store has committed, and offsets committed once the broker has them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import DecodeError
from kafka.consumer.fetcher import ConsumerRecord
from opentelemetry import context as otel_context
from opentelemetry import trace

from copilot.events.v1 import events_pb2
from copilot.kafka import DeadLetters, group_consumer
from copilot.logs import log_fields
from copilot.tracing import extract_headers
from services.monitor.detectors import Detector, Finding, SampledRunner, Tier, run_detectors
from services.monitor.flagstore import FlagStore
from services.monitor.metrics import MonitorMetrics

log = logging.getLogger(__name__)
tracer = trace.get_tracer("copilot-monitor")

_RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
# What became of an interaction whose fate the batch's store call decides.
_PENDING = "pending"
# Most interactions kept for the sampled tier and the alerts while their batch's offsets are not committed.
_MAX_UNREPORTED = 10_000
# Failures that come from what a record holds rather than from the database or broker being away: the same
# record fails the same way on every retry.
_REFUSED = (sa.exc.DataError, sa.exc.IntegrityError, ValueError)

Alerts = Callable[[events_pb2.InteractionEvent, Sequence[Finding]], object]


class MonitorConsumer:
    def __init__(
        self,
        bootstrap_servers: str,
        interactions_topic: str,
        feedback_topic: str,
        group: str,
        dead_letter_topic: str,
        store: FlagStore,
        detectors: list[Detector],
        metrics: MonitorMetrics | None = None,
        sampled: SampledRunner | None = None,
        alerts: Alerts | None = None,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``detectors``: their inline tier runs on every interaction. ``sampled``, when given, gets each
        newly stored interaction once its batch is committed, for the expensive detectors that report to the
        store later (``FlagStore.add_findings``). ``alerts``, when given, gets each newly stored interaction
        with its inline findings, also after the commit (``alerts.FlagAlerts``). ``kafka_options``: the
        connection's security, from ``KafkaSettings.client_options``."""
        options = dict(kafka_options or {})
        self._consumer = group_consumer(
            bootstrap_servers, interactions_topic, group, max_poll_records=500, **options
        )
        self._consumer.subscribe([interactions_topic, feedback_topic])
        self._dead_letters = DeadLetters(bootstrap_servers, dead_letter_topic, **options)
        self._handlers: dict[str, Callable[[ConsumerRecord], str]] = {
            interactions_topic: self._interaction,
            feedback_topic: self._feedback,
        }
        self._store = store
        self._detectors = detectors
        self._metrics = metrics or MonitorMetrics()
        self._sampled = sampled
        self._alerts = alerts
        # The current batch's decoded interactions and their findings, stored together at its end, and the
        # records for the dead-letter topic with their reasons, sent once the batch is stored.
        self._pending: list[tuple[events_pb2.InteractionEvent, list[Finding]]] = []
        self._rejected: list[tuple[ConsumerRecord, str]] = []
        # Interactions stored by a try whose offset commit then failed: the retry finds them stored already
        # (duplicates), yet nothing has handed them to the sampled tier and the alerts.
        self._unreported: OrderedDict[str, None] = OrderedDict()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-consumer", daemon=True)
        self.processed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._consumer.close()
        self._dead_letters.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            batches = self._consumer.poll(timeout_ms=500)
            if not batches:
                continue
            records = [record for partition_records in batches.values() for record in partition_records]
            try:
                try:
                    outcomes, stored = self._store_records(records)
                except _REFUSED:
                    log.exception(
                        "the store refused a batch; storing its %d records one at a time", len(records)
                    )
                    outcomes, stored = self._store_each(records)
                for (event, _), is_new in zip(self._pending, stored, strict=True):
                    if is_new:
                        self._unreported[event.event_id] = None
                while len(self._unreported) > _MAX_UNREPORTED:
                    self._unreported.popitem(last=False)
                for record, reason in self._rejected:
                    self._dead_letters.send(record, reason)
                self._rejected = []
                self._dead_letters.flush()
                self._consumer.commit()
                failures = 0
            except Exception:
                # Kafka has no offset of this batch; a retry skips as duplicates whatever the store did
                # commit (when only the offset commit failed).
                backoff = _RETRY_BACKOFF_S[min(failures, len(_RETRY_BACKOFF_S) - 1)]
                failures += 1
                log.exception("storing a batch failed; retrying it in %.1f s", backoff)
                for partition, records in batches.items():
                    self._consumer.seek(partition, records[0].offset)
                self._stop.wait(backoff)
                continue
            try:
                self._after_commit(outcomes, stored)
                self._report_lag()
            except Exception:
                # The batch is stored and committed; a bug here must not stop the consumer.
                log.exception("reporting a stored batch failed")

    def _store_records(self, records: Sequence[ConsumerRecord]) -> tuple[list[tuple[str, str]], list[bool]]:
        """Handles the records and stores them in one transaction; returns what became of each record (see
        ``_handle``) and of each pending interaction."""
        with self._store.batch():
            self._pending, self._rejected = [], []
            outcomes = [self._handle(record) for record in records]
            stored = self._store.record_many(self._pending)
        return outcomes, stored

    def _store_each(self, records: Sequence[ConsumerRecord]) -> tuple[list[tuple[str, str]], list[bool]]:
        """``_store_records`` for each record in a transaction of its own, after their batch was refused; a
        record refused again goes to the dead-letter topic with the reason, and the others are stored."""
        outcomes: list[tuple[str, str]] = []
        stored: list[bool] = []
        pending: list[tuple[events_pb2.InteractionEvent, list[Finding]]] = []
        rejected: list[tuple[ConsumerRecord, str]] = []
        for record in records:
            try:
                done, fates = self._store_records([record])
            except _REFUSED as exc:
                log.exception("the store refused %s/%d@%d", record.topic, record.partition, record.offset)
                first_line = str(exc).partition("\n")[0][:500]
                self._pending = []
                self._rejected = [
                    (record, f"the monitor store refused it: {type(exc).__name__}: {first_line}")
                ]
                done, fates = [(record.topic, "dead_lettered")], []
            outcomes += done
            stored += fates
            pending += self._pending
            rejected += self._rejected
        self._pending, self._rejected = pending, rejected
        return outcomes, stored

    def _after_commit(self, outcomes: list[tuple[str, str]], stored: list[bool]) -> None:
        """Counts the batch, logs it, and hands its new interactions on to the sampled tier and the alerts."""
        fates = iter(stored)
        counts = Counter(
            (topic, ("stored" if next(fates) else "duplicate") if outcome == _PENDING else outcome)
            for topic, outcome in outcomes
        )
        for (topic, outcome), n in counts.items():
            self._metrics.event(topic, outcome, n)
        # New: stored by this try, or by an earlier try of the same batch whose offset commit failed.
        new = []
        for entry in self._pending:
            if entry[0].event_id in self._unreported:
                del self._unreported[entry[0].event_id]
                new.append(entry)
        self._pending = []
        self.processed += sum(n for (_, outcome), n in counts.items() if outcome == "stored")
        flagged = 0
        debug = log.isEnabledFor(logging.DEBUG)
        for event, findings in new:
            flagged += bool(findings)
            if debug:
                log.debug(
                    "inspected interaction",
                    extra=log_fields(interaction_id=event.event_id, flags=[f.detector for f in findings]),
                )
            if self._sampled is not None:
                self._sampled.submit(event)
            if self._alerts is not None and findings:
                self._alerts(event, findings)
        log.info(
            "stored a batch",
            extra=log_fields(
                records=len(outcomes),
                interactions=len(new),
                flagged_interactions=flagged,
                outcomes={f"{topic}:{outcome}": n for (topic, outcome), n in counts.items()},
            ),
        )

    def _report_lag(self) -> None:
        for partition in self._consumer.assignment():
            highwater = self._consumer.highwater(partition)
            if highwater is not None:
                lag = max(highwater - self._consumer.position(partition), 0)
                self._metrics.lag(partition.topic, partition.partition, lag)

    def _handle(self, record: ConsumerRecord) -> tuple[str, str]:
        """Returns the record's topic and what became of it (``_PENDING`` for an interaction the batch's
        store call decides), for the metrics once the batch is committed."""
        token = otel_context.attach(extract_headers(record.headers))
        try:
            with tracer.start_as_current_span("monitor.inspect", kind=trace.SpanKind.CONSUMER):
                return record.topic, self._handlers[record.topic](record)
        finally:
            otel_context.detach(token)

    def _dead_letter(self, record: ConsumerRecord, reason: str) -> str:
        # Sent once the batch is stored: a batch retried after a failure must not send it twice.
        self._rejected.append((record, reason))
        return "dead_lettered"

    def _interaction(self, record: ConsumerRecord) -> str:
        event = events_pb2.InteractionEvent()
        try:
            event.ParseFromString(_value(record))
        except DecodeError as exc:
            return self._dead_letter(record, f"undecodable InteractionEvent: {exc}")
        if not event.event_id:
            return self._dead_letter(record, "InteractionEvent without event_id")
        self._pending.append((event, run_detectors(self._detectors, event, Tier.INLINE)))
        return _PENDING

    def _feedback(self, record: ConsumerRecord) -> str:
        event = events_pb2.FeedbackEvent()
        try:
            event.ParseFromString(_value(record))
        except DecodeError as exc:
            return self._dead_letter(record, f"undecodable FeedbackEvent: {exc}")
        if not event.event_id:
            return self._dead_letter(record, "FeedbackEvent without event_id")
        if not event.interaction_id:
            return self._dead_letter(record, "FeedbackEvent without interaction_id")
        if not self._store.record_feedback(event):
            return "duplicate"
        log.info(
            "stored feedback",
            extra=log_fields(interaction_id=event.interaction_id, feedback_id=event.event_id),
        )
        return "stored"


def _value(record: ConsumerRecord) -> bytes:
    """The record's value; a record without one (a tombstone) cannot hold an event."""
    if not isinstance(record.value, bytes):
        raise DecodeError("the record has no value (a null-value, tombstone, record)")
    return record.value
