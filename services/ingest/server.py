"""``python -m services.ingest.server``"""

from __future__ import annotations

from copilot.auth import TokenVerifier
from copilot.embedding import MiniLmEmbedder, favour_embedding_threads
from copilot.grpc_server import GrpcServer
from copilot.ingest.v1 import ingest_pb2_grpc
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from copilot.logs import configure_logging
from copilot.tracing import configure_metrics, configure_tracing
from copilot.vectorstore.factory import open_store
from services.ingest.pipeline import IngestPipeline
from services.ingest.requests import IngestRequestConsumer
from services.ingest.service import IngestServicer
from services.ingest.settings import IngestSettings


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
    consumer = request_consumer(settings, pipeline, server) if settings.consume_requests else None
    server.set_serving(True)
    # Only now: a consumer that died at once must leave health NOT_SERVING, not be overruled by the above.
    if consumer is not None:
        consumer.start()

    def close() -> None:
        # Before the publisher and the store: the request in hand still writes chunks and events.
        if consumer is not None:
            consumer.stop()
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
