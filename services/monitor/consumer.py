"""Reads interaction events from Kafka, runs the detectors and stores flags.

Offsets are committed only after the flag store has written the batch, and the store ignores event ids
it already has, so a crash or a replay neither loses nor duplicates flags.
"""

from __future__ import annotations

import logging
import threading

from google.protobuf.message import DecodeError
from kafka.consumer.fetcher import ConsumerRecord
from opentelemetry import context as otel_context
from opentelemetry import trace

from copilot.events.v1 import events_pb2
from copilot.kafka import DeadLetters, group_consumer
from copilot.logs import log_fields
from copilot.tracing import extract_headers
from services.monitor.detectors import Detector, run_detectors
from services.monitor.flagstore import FlagStore

log = logging.getLogger(__name__)
tracer = trace.get_tracer("copilot-monitor")


class InteractionConsumer:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group: str,
        dead_letter_topic: str,
        store: FlagStore,
        detectors: list[Detector],
    ) -> None:
        self._consumer = group_consumer(bootstrap_servers, topic, group, max_poll_records=500)
        self._dead_letters = DeadLetters(bootstrap_servers, dead_letter_topic)
        self._store = store
        self._detectors = detectors
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="interaction-consumer", daemon=True)
        self.processed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._consumer.close()
        self._dead_letters.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            batches = self._consumer.poll(timeout_ms=500)
            if not batches:
                continue
            for records in batches.values():
                for record in records:
                    self._handle(record)
            self._dead_letters.flush()
            self._consumer.commit()

    def _handle(self, record: ConsumerRecord) -> None:
        token = otel_context.attach(extract_headers(record.headers))
        try:
            with tracer.start_as_current_span("monitor.inspect", kind=trace.SpanKind.CONSUMER):
                event = events_pb2.InteractionEvent()
                try:
                    event.ParseFromString(record.value)
                except DecodeError as exc:
                    self._dead_letters.send(record, f"undecodable InteractionEvent: {exc}")
                    return
                if not event.event_id:
                    self._dead_letters.send(record, "InteractionEvent without event_id")
                    return
                findings = run_detectors(self._detectors, event)
                if self._store.record(event, findings):
                    self.processed += 1
                    log.info(
                        "inspected interaction",
                        extra=log_fields(interaction_id=event.event_id, flags=[f.detector for f in findings]),
                    )
        finally:
            otel_context.detach(token)
