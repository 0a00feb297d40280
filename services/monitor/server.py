"""``python -m services.monitor.server``"""

from __future__ import annotations

from copilot.auth import TokenVerifier
from copilot.grpc_server import GrpcServer
from copilot.kafka import ensure_topics
from copilot.logs import configure_logging
from copilot.monitor.v1 import monitor_pb2_grpc
from copilot.tracing import configure_tracing
from services.monitor.consumer import MonitorConsumer
from services.monitor.detectors import default_detectors
from services.monitor.flagstore import FlagStore
from services.monitor.metrics import MonitorMetrics, configure_metrics
from services.monitor.review import ReviewQueue
from services.monitor.service import MonitorServicer
from services.monitor.settings import MonitorSettings
from services.monitor.web.app import ReviewPage, WebServer


def main() -> None:
    settings = MonitorSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-monitor", settings.telemetry)
    configure_metrics("copilot-monitor", settings.telemetry)
    verifier = TokenVerifier(settings.auth)
    server = GrpcServer("monitor", settings, verifier)
    slot = server.add_service(
        monitor_pb2_grpc.add_MonitorServiceServicer_to_server, "copilot.monitor.v1.MonitorService"
    )
    server.start()
    if not settings.database_url.get_secret_value():
        settings.database.parent.mkdir(parents=True, exist_ok=True)
    metrics = MonitorMetrics()
    store = FlagStore(settings.database_target(), settings.review.policy(), metrics)
    queue = ReviewQueue(store)
    metrics.watch_queue(queue.open_count)
    kafka = settings.kafka
    ensure_topics(
        kafka.bootstrap_servers, [kafka.interactions_topic, kafka.feedback_topic, settings.dead_letter_topic]
    )
    consumer = MonitorConsumer(
        kafka.bootstrap_servers,
        kafka.interactions_topic,
        kafka.feedback_topic,
        settings.consumer_group,
        settings.dead_letter_topic,
        store,
        default_detectors(settings.latency_ceiling_ms),
        metrics,
    )
    consumer.start()
    web = None
    if settings.http_port:
        page = ReviewPage(
            queue,
            verifier,
            settings.reviewer_role,
            settings.review.adjudicator_role,
            settings.review.agreement_resamples,
            settings.cookie_secure,
        )
        web = WebServer(page.app, settings.http_host, settings.http_port)
        web.start()
    slot.fill(
        MonitorServicer(
            store, settings.reviewer_role, settings.review.adjudicator_role, settings.review.evaluator_role
        )
    )
    server.set_serving(True)

    def close() -> None:
        if web is not None:
            web.stop()
        consumer.stop()
        store.close()

    server.run_until_signal(on_stop=close)


if __name__ == "__main__":
    main()
