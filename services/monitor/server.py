"""``python -m services.monitor.server``"""

from __future__ import annotations

from copilot.auth import TokenVerifier
from copilot.grpc_server import GrpcServer
from copilot.kafka import ensure_topics
from copilot.logs import configure_logging
from copilot.monitor.v1 import monitor_pb2_grpc
from copilot.tracing import configure_tracing
from services.monitor.consumer import InteractionConsumer
from services.monitor.detectors import default_detectors
from services.monitor.flagstore import FlagStore
from services.monitor.service import MonitorServicer
from services.monitor.settings import MonitorSettings


def main() -> None:
    settings = MonitorSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-monitor", settings.telemetry)
    server = GrpcServer("monitor", settings, TokenVerifier(settings.auth))
    slot = server.add_service(
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server, "copilot.monitor.v1.MonitorService"
    )
    server.start()
    settings.database.parent.mkdir(parents=True, exist_ok=True)
    store = FlagStore(settings.database)
    ensure_topics(
        settings.kafka.bootstrap_servers, [settings.kafka.interactions_topic, settings.dead_letter_topic]
    )
    consumer = InteractionConsumer(
        settings.kafka.bootstrap_servers,
        settings.kafka.interactions_topic,
        settings.consumer_group,
        settings.dead_letter_topic,
        store,
        default_detectors(settings.latency_ceiling_ms),
    )
    consumer.start()
    slot.fill(MonitorServicer(store, settings.reviewer_role))
    server.set_serving(True)

    def close() -> None:
        consumer.stop()
        store.close()

    server.run_until_signal(on_stop=close)


if __name__ == "__main__":
    main()
