"""``python -m services.ingest.server``"""

from __future__ import annotations

from copilot.auth import TokenVerifier
from copilot.embedding import OnnxMiniLmEmbedder
from copilot.events.v1 import events_pb2
from copilot.grpc_server import GrpcServer
from copilot.ingest.v1 import ingest_pb2_grpc
from copilot.kafka import EventPublisher, ensure_topics
from copilot.logs import configure_logging
from copilot.tracing import configure_tracing
from copilot.vectorstore.factory import open_store
from services.ingest.pipeline import IngestPipeline
from services.ingest.service import IngestServicer
from services.ingest.settings import IngestSettings


class _KafkaDocumentEvents:
    def __init__(self, publisher: EventPublisher, topic: str) -> None:
        self._publisher = publisher
        self._topic = topic

    def publish(self, event: events_pb2.DocumentEvent) -> None:
        self._publisher.publish(self._topic, event.document_id, event)


def main() -> None:
    settings = IngestSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-ingest", settings.telemetry)
    server = GrpcServer("ingest", settings, TokenVerifier(settings.auth))
    slot = server.add_service(
        ingest_pb2_grpc.add_IngestServiceServicer_to_server, "copilot.ingest.v1.IngestService"
    )
    server.start()
    ensure_topics(settings.kafka.bootstrap_servers, [settings.kafka.documents_topic])
    publisher = EventPublisher(settings.kafka.bootstrap_servers, settings.kafka.spool_dir / "ingest.sqlite")
    embedder = OnnxMiniLmEmbedder(intra_op_num_threads=settings.embedding_threads)
    store = open_store(settings.store, embedder.dimension)
    pipeline = IngestPipeline(
        store,
        embedder,
        _KafkaDocumentEvents(publisher, settings.kafka.documents_topic),
        settings.chunk_tokens,
        settings.chunk_overlap_tokens,
    )
    slot.fill(IngestServicer(pipeline, settings.ingest_role, settings.max_document_bytes))
    server.set_serving(True)

    def close() -> None:
        publisher.close()
        store.close()

    server.run_until_signal(on_stop=close)


if __name__ == "__main__":
    main()
