"""The ingest service's gRPC health follows its Kafka request consumer: should the consumer's thread die,
requests would pile up unread while the gRPC API still answered, so health turns NOT_SERVING (and
Kubernetes' liveness probe restarts the pod). The real broker, the real consumer and the real gRPC health
service on loopback, wired as ``services.ingest.server`` wires them."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaProducer

from copilot.common.v1 import common_pb2
from copilot.events.v1 import events_pb2
from copilot.grpc_server import GrpcServer
from copilot.ingest.v1 import ingest_pb2_grpc
from copilot.settings import KafkaSettings
from copilot.vectorstore.edge import EdgeChunkStore
from services.ingest.pipeline import IngestPipeline
from services.ingest.server import request_consumer
from services.ingest.settings import IngestSettings
from tests.integration.kafka_checks import wait_until
from tests.integration.store_standins import HashEmbedder

DIM = 8
SERVICE = "copilot.ingest.v1.IngestService"


class _Events:
    def publish(self, event: events_pb2.DocumentEvent) -> None:
        pass


class _Panic(BaseException):
    """What no ``except Exception`` catches, as a native extension's panic (pyo3's PanicException)."""


def test_health_is_not_serving_once_the_request_consumer_thread_dies(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = IngestSettings(
        port=0,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap, ingest_requests_topic=f"requests-{suffix}"),
        requests_group=f"ingest-{suffix}",
        dead_letter_topic=f"dlq-{suffix}",
        parallel_requests=1,
    )
    server = GrpcServer("ingest", settings, None)
    server.add_service(ingest_pb2_grpc.add_IngestServiceServicer_to_server, SERVICE)
    server.start()
    store = EdgeChunkStore(tmp_path / "edge", DIM)
    consumer = request_consumer(settings, IngestPipeline(store, HashEmbedder(DIM), _Events()), server)
    server.set_serving(True)
    consumer.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    health = health_pb2_grpc.HealthStub(channel)

    def status(service: str = "") -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    try:
        request = events_pb2.IngestRequestEvent(
            event_id=str(uuid.uuid4()),
            action=events_pb2.INGEST_ACTION_INGEST,
            uri="/docs/memo.md",
            content=b"# Memo\n\nThe consumer reads this.",
            access=common_pb2.AccessControl(groups=["finance"]),
            tenant="acme",
        )
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        producer.send(settings.kafka.ingest_requests_topic, request.SerializeToString())
        producer.close()
        assert wait_until(lambda: consumer.handled == 1), "the consumer should be reading requests"
        assert status() == status(SERVICE) == health_pb2.HealthCheckResponse.SERVING

        def panic(*args: Any, **kwargs: Any) -> Any:
            raise _Panic("poll panicked")

        # The fault: the consumer's own KafkaConsumer, whose poll now ends the loop.
        consumer._consumer.poll = panic  # type: ignore[method-assign]

        assert wait_until(lambda: status() == health_pb2.HealthCheckResponse.NOT_SERVING, 5)
        assert status(SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
        died = [
            r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "services.ingest.requests"
        ]
        assert [r.getMessage() for r in died] == [
            "ingest request consumer thread died; ingest requests are no longer read"
        ]
    finally:
        channel.close()
        consumer.stop()
        server.stop(1)
        store.close()
