"""``python -m services.bots.server``: the Slack and Teams bots' HTTP endpoints (``/slack/events``,
``/api/messages``), Slack Socket Mode when configured, and a gRPC health port like every service."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from botbuilder.integration.aiohttp import CloudAdapter
from botframework.connector.auth import ServiceClientCredentialsFactory
from opentelemetry import metrics

from copilot.grpc_server import GrpcServer
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from copilot.logs import configure_logging
from copilot.tracing import configure_metrics, configure_tracing
from services.bots.core import BotCore, Metrics
from services.bots.feedback import EventPort, FeedbackRecorder
from services.bots.generation_client import GrpcGeneration, link_template
from services.bots.http import HttpServer, TeamsEndpoint, build_http_app
from services.bots.identity import CachedDirectory, KeycloakDirectory, KeycloakTokenExchange
from services.bots.settings import BotsSettings
from services.bots.slack import SlackBot, web_client
from services.bots.store import BotStore
from services.bots.teams import TeamsBot, authentication

log = logging.getLogger(__name__)


@dataclass
class Bots:
    http: HttpServer
    store: BotStore
    generation: GrpcGeneration
    slack: SlackBot | None
    executor: ThreadPoolExecutor
    closers: list[object] = field(default_factory=list)

    def stop(self) -> None:
        for closer in self.closers:
            closer.close()  # type: ignore[attr-defined]
        self.http.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.generation.close()
        self.store.close()


def build(
    settings: BotsSettings,
    feedback_events: EventPort,
    teams_credentials: ServiceClientCredentialsFactory | None = None,
    meter: metrics.Meter | None = None,
) -> Bots:
    """Everything but the gRPC health port and Kafka; tests call it with local stand-ins' addresses."""
    store = BotStore(settings.database, settings.conversation_idle_s)
    generation = GrpcGeneration(
        settings.generation_target, settings.deadline_s, link_template(settings.document_link_template)
    )
    core = BotCore(
        CachedDirectory(
            KeycloakDirectory(settings.keycloak), settings.identity_ttl_s, settings.unknown_identity_ttl_s
        ),
        KeycloakTokenExchange(settings.keycloak),
        generation,
        store,
        access_help=settings.access_help,
        max_audience_members=settings.max_audience_members,
        deadline_s=settings.deadline_s,
        metrics_=Metrics.create(meter),
    )
    feedback = FeedbackRecorder(feedback_events, settings.pseudonym_key.get_secret_value().encode())
    executor = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="bots-answer")
    slack = None
    if settings.slack.enabled:
        slack = SlackBot(
            settings.slack, web_client(settings.slack), core, feedback, store, settings.identity_ttl_s
        )
    teams = None
    if settings.teams.enabled:
        adapter = CloudAdapter(authentication(settings.teams, teams_credentials))
        bot = TeamsBot(settings.teams, adapter, core, feedback, store, executor)
        teams = TeamsEndpoint(adapter, bot)
    http = HttpServer(build_http_app(slack, teams, executor), settings.http_host, settings.http_port)
    bots = Bots(http, store, generation, slack, executor)
    if slack is not None and settings.slack.mode == "socket":
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        socket_mode = SocketModeHandler(slack.app, settings.slack.app_token.get_secret_value())
        socket_mode.connect()
        bots.closers.append(socket_mode)
    return bots


def main() -> None:
    settings = BotsSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-bots", settings.telemetry)
    configure_metrics("copilot-bots", settings.telemetry)
    if not (settings.slack.enabled or settings.teams.enabled):
        log.warning("neither Slack nor Teams is enabled (COPILOT_BOTS_SLACK__ENABLED, ..._TEAMS__ENABLED)")
    server = GrpcServer("bots", settings, verifier=None)
    server.start()
    kafka_options = settings.kafka.client_options()
    ensure_topics(settings.kafka.bootstrap_servers, [settings.feedback_topic], **kafka_options)
    publisher = EventPublisher(
        settings.kafka.bootstrap_servers,
        settings.kafka.spool_dir / "bots.sqlite",
        spool_max_bytes=settings.kafka.spool_max_bytes,
        **kafka_options,
    )
    events = TopicPublisher(publisher, settings.feedback_topic, key=lambda e: e.interaction_id)
    bots = build(settings, events)
    port = bots.http.start()
    log.info("bots listening for Slack and Teams on %s:%d", settings.http_host, port)
    server.set_serving(True)

    def close() -> None:
        bots.stop()
        publisher.close()

    server.run_until_signal(on_stop=close)


if __name__ == "__main__":
    main()
