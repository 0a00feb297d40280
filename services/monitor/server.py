"""``python -m services.monitor.server``"""

from __future__ import annotations

from copilot.auth import TokenVerifier
from copilot.embedding import MiniLmEmbedder
from copilot.events.v1 import events_pb2
from copilot.grpc_server import GrpcServer
from copilot.kafka import ensure_topics
from copilot.logs import configure_logging
from copilot.monitor.v1 import monitor_pb2_grpc
from copilot.tracing import configure_metrics, configure_tracing
from services.monitor.alerts import Alerter, Destination, FlagAlerts, SlackDestination, WebhookDestination
from services.monitor.consumer import MonitorConsumer
from services.monitor.detectors import (
    Detector,
    Finding,
    SampledRunner,
    ToxicityClassifierDetector,
    default_detectors,
)
from services.monitor.drift import (
    BaselineStore,
    DeferredEmbedder,
    QueryDriftMonitor,
    RetrievalDecayMonitor,
)
from services.monitor.flagstore import FlagStore
from services.monitor.metrics import MonitorMetrics
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
    alerts = _alerts(settings)
    if alerts is not None:
        metrics.watch_alerts(alerts.alerter.snapshot)
        alerts.alerter.start()
    sampled = _sampled_tier(settings, store, alerts)
    if sampled is not None:
        metrics.watch_sampled(sampled.counts)
        sampled.start()
    kafka = settings.kafka
    ensure_topics(
        kafka.bootstrap_servers,
        [kafka.interactions_topic, kafka.feedback_topic, settings.dead_letter_topic],
        **kafka.client_options(),
    )
    consumer = MonitorConsumer(
        kafka.bootstrap_servers,
        kafka.interactions_topic,
        kafka.feedback_topic,
        settings.consumer_group,
        settings.dead_letter_topic,
        store,
        inline_tier(settings, store),
        metrics,
        sampled,
        alerts,
        kafka_options=kafka.client_options(),
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
        # Whatever the sampled tier still finds is stored and alerted on before the store closes.
        if sampled is not None:
            sampled.stop(timeout_s=10)
        if alerts is not None:
            alerts.alerter.stop()
        store.close()

    server.run_until_signal(on_stop=close)


def inline_tier(settings: MonitorSettings, baselines: BaselineStore | None = None) -> list[Detector]:
    """The detectors the consumer runs on every interaction; ``baselines`` (the flag store) keeps the
    retrieval-decay baseline across restarts."""
    return [
        *default_detectors(settings.latency_ceiling_ms, settings.role_groups),
        RetrievalDecayMonitor(
            baseline_size=settings.retrieval_decay_baseline_size,
            window_size=settings.retrieval_decay_window_size,
            baselines=baselines,
        ),
    ]


def _alerts(settings: MonitorSettings) -> FlagAlerts | None:
    """Alerts go to the webhooks that are configured; None when none is."""
    destinations: list[Destination] = []
    if settings.alert_webhook_url is not None:
        destinations.append(WebhookDestination(settings.alert_webhook_url.get_secret_value()))
    if settings.alert_slack_webhook_url is not None:
        destinations.append(SlackDestination(settings.alert_slack_webhook_url.get_secret_value()))
    if not destinations:
        return None
    alerter = Alerter(
        destinations,
        min_severity=settings.alert_severity(),
        dedup_window_s=settings.alert_dedup_window_s,
        rate_per_minute=settings.alert_rate_per_minute,
        burst=settings.alert_burst,
    )
    return FlagAlerts(alerter, settings.review_base_url, settings.review.policy().min_severity)


def _sampled_tier(
    settings: MonitorSettings, store: FlagStore, alerts: FlagAlerts | None
) -> SampledRunner | None:
    """The expensive detectors on a sample of interactions, on a thread of their own; None when every
    sample rate is 0."""
    detectors: list[Detector] = []
    if settings.toxicity_classifier_sample_rate > 0:
        detectors.append(ToxicityClassifierDetector(sample_rate=settings.toxicity_classifier_sample_rate))
    if settings.drift_sample_rate > 0:
        embedder = DeferredEmbedder(
            lambda: MiniLmEmbedder(cache_dir=settings.embedding_cache_dir),
            MiniLmEmbedder.model_id,
            MiniLmEmbedder.dimension,
        )
        detectors.append(
            QueryDriftMonitor(
                embedder,
                sample_rate=settings.drift_sample_rate,
                baseline_size=settings.drift_baseline_size,
                window_size=settings.drift_window_size,
                baselines=store,
            )
        )
    if not detectors:
        return None

    def on_findings(event: events_pb2.InteractionEvent, findings: list[Finding]) -> None:
        if findings:
            store.add_findings(event, findings)
            if alerts is not None:
                alerts(event, findings)

    return SampledRunner(detectors, on_findings)


if __name__ == "__main__":
    main()
