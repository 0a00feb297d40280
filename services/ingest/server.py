"""``python -m services.ingest.server``"""

from __future__ import annotations

import logging
import threading

from copilot.auth import TokenVerifier
from copilot.embedding import MiniLmEmbedder, favour_embedding_threads
from copilot.grpc_server import GrpcServer
from copilot.ingest.v1 import ingest_pb2_grpc
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from copilot.logs import configure_logging
from copilot.tracing import configure_metrics, configure_tracing
from copilot.vectorstore.factory import open_store
from copilot.vectorstore.port import ChunkStore, new_revision
from services.ingest.pipeline import IngestPipeline
from services.ingest.requests import IngestRequestConsumer
from services.ingest.service import IngestServicer
from services.ingest.settings import IngestSettings

log = logging.getLogger(__name__)


class TombstonePurge:
    """Removes the tombstones deletes left more than ``retention_s`` ago, once at start and then every
    ``interval_s``, on a thread of its own. A round that fails (the store out of reach) is logged and the
    next one tries again."""

    def __init__(self, store: ChunkStore, retention_s: float, interval_s: float) -> None:
        self._store = store
        self._retention_us = int(retention_s * 1_000_000)
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tombstone-purge", daemon=True)

    def purge(self) -> int:
        removed = self._store.purge_tombstones(new_revision() - self._retention_us)
        if removed:
            log.info("purged %d delete tombstones", removed)
        return removed

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            # Lets a round in hand finish before the store closes.
            self._thread.join(30)

    def _run(self) -> None:
        while True:
            try:
                self.purge()
            except Exception as exc:
                log.warning(
                    "purging delete tombstones failed (%s); trying again in %g s", exc, self._interval_s
                )
            if self._stopped.wait(self._interval_s):
                return


def main() -> None:
    settings = IngestSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-ingest", settings.telemetry)
    configure_metrics("copilot-ingest", settings.telemetry)
    server = GrpcServer("ingest", settings, TokenVerifier(settings.auth))
    slot = server.add_service(
        ingest_pb2_grpc.add_IngestServiceServicer_to_server, "copilot.ingest.v1.IngestService"
    )
    server.start()
    kafka_options = settings.kafka.client_options()
    ensure_topics(settings.kafka.bootstrap_servers, [settings.kafka.documents_topic], **kafka_options)
    publisher = EventPublisher(
        settings.kafka.bootstrap_servers,
        settings.kafka.spool_dir / "ingest.sqlite",
        spool_max_bytes=settings.kafka.spool_max_bytes,
        **kafka_options,
    )
    favour_embedding_threads()
    embedder = MiniLmEmbedder(threads=settings.embedding_threads, cache_dir=settings.embedding_cache_dir)
    store = open_store(settings.store, embedder.dimension)
    pipeline = IngestPipeline(
        store,
        embedder,
        TopicPublisher(publisher, settings.kafka.documents_topic, key=lambda e: e.document_id),
        settings.chunk_tokens,
        settings.chunk_overlap_tokens,
        settings.parse_limits(),
    )
    slot.fill(IngestServicer(pipeline, settings.ingest_role, settings.max_document_bytes))
    purge = TombstonePurge(store, settings.tombstone_retention_s, settings.tombstone_purge_interval_s)
    purge.start()
    consumer = request_consumer(settings, pipeline, server) if settings.consume_requests else None
    server.set_serving(True)
    # Only now: a consumer that died at once must leave health NOT_SERVING, not be overruled by the above.
    if consumer is not None:
        consumer.start()

    def close() -> None:
        # Before the publisher and the store: the request in hand still writes chunks and events.
        if consumer is not None:
            consumer.stop()
        purge.stop()
        publisher.close()
        store.close()

    server.run_until_signal(on_stop=close)


def request_consumer(
    settings: IngestSettings, pipeline: IngestPipeline, server: GrpcServer
) -> IngestRequestConsumer:
    """The consumer of ingest requests from Kafka, not yet started. Should its thread die, requests would
    pile up unread while the gRPC API still works, so health turns NOT_SERVING and the orchestrator
    restarts the service."""
    kafka_options = settings.kafka.client_options()
    topics = [settings.kafka.ingest_requests_topic, settings.dead_letter_topic]
    ensure_topics(settings.kafka.bootstrap_servers, topics, **kafka_options)
    return IngestRequestConsumer(
        settings.kafka.bootstrap_servers,
        settings.kafka.ingest_requests_topic,
        settings.requests_group,
        settings.dead_letter_topic,
        pipeline,
        settings.max_document_bytes,
        parallel=settings.parallel_requests,
        kafka_options=kafka_options,
        on_death=lambda: server.set_serving(False),
    )


if __name__ == "__main__":
    main()
