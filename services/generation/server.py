"""``python -m services.generation.server``"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from copilot.auth import TokenVerifier
from copilot.embedding import MiniLmEmbedder
from copilot.generation.v1 import generation_pb2_grpc
from copilot.grpc_server import GrpcServer
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from copilot.logs import configure_logging
from copilot.tracing import configure_metrics, configure_tracing
from services.generation.agent import Agent
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.conversations import ConversationStore
from services.generation.deployment import start_engines
from services.generation.engine import EngineCatalog
from services.generation.prompt import load_system_rules
from services.generation.retrieval_client import GrpcPassageSource
from services.generation.service import GenerationServicer
from services.generation.settings import GenerationSettings
from services.generation.tools.registry import build_toolbox
from services.generation.verification import CitationVerifier

log = logging.getLogger(__name__)


class HealthChecked(Protocol):
    model_name: str

    def healthy(self) -> bool: ...


class EngineHealthWatch:
    """Keeps the gRPC health in step with the engines: NOT_SERVING while any of them is down (a replica
    crashed and Serve is starting a new one), SERVING again once all are back."""

    def __init__(
        self, engines: Sequence[HealthChecked], set_serving: Callable[[bool], None], period_s: float
    ) -> None:
        self._engines = list(engines)
        self._set_serving = set_serving
        self._period_s = period_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="engine-health", daemon=True)
        self._serving: bool | None = None

    def check(self) -> bool:
        down = [e.model_name for e in self._engines if not _healthy(e)]
        serving = not down
        if serving != self._serving:
            if down:
                log.warning("model engine down: %s; health is NOT_SERVING", ", ".join(down))
            elif self._serving is not None:
                log.info("model engines healthy again; health is SERVING")
            # Only changes are passed on, so a server that is shutting down stays NOT_SERVING.
            self._set_serving(serving)
        self._serving = serving
        return serving

    def start(self) -> None:
        self.check()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while not self._stopped.wait(self._period_s):
            self.check()


def _healthy(engine: HealthChecked) -> bool:
    try:
        return engine.healthy()
    except Exception:  # a status call that fails says as much as a failed replica
        log.exception("health check of %s failed", engine.model_name)
        return False


def main() -> None:
    settings = GenerationSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-generation", settings.telemetry)
    configure_metrics("copilot-generation", settings.telemetry)
    # Before anything starts: a prompt variant whose rules file is unusable must not serve the default.
    system_rules = load_system_rules(settings.system_rules_file)
    server = GrpcServer("generation", settings, TokenVerifier(settings.auth))
    slot = server.add_service(
        generation_pb2_grpc.add_GenerationServiceServicer_to_server, "copilot.generation.v1.GenerationService"
    )
    server.start()
    kafka_options = settings.kafka.client_options()
    ensure_topics(settings.kafka.bootstrap_servers, [settings.kafka.interactions_topic], **kafka_options)
    publisher = EventPublisher(
        settings.kafka.bootstrap_servers,
        settings.kafka.spool_dir / "generation.sqlite",
        spool_max_bytes=settings.kafka.spool_max_bytes,
        **kafka_options,
    )
    engines = start_engines(
        settings.engine,
        settings.served_models(),
        settings.model_cache_dir,
        settings.engine_threads,
        settings.context_tokens,
        start_timeout_s=settings.engine_start_timeout_s,
        ray_temp_dir=settings.ray_temp_dir,
    )
    source = GrpcPassageSource(
        settings.retrieval_target, passages_per_document=settings.passages_per_document
    )
    policy = AnswerPolicy(
        default_top_k=settings.default_top_k,
        min_relevance=settings.min_relevance,
        max_question_chars=settings.max_question_chars,
        max_answer_tokens=settings.max_answer_tokens,
        system_rules=system_rules,
    )
    # One thread: a handful of sentences per answer, and the model needs the cores more.
    embedder = MiniLmEmbedder(threads=1, cache_dir=settings.embedding_cache_dir)
    answerer = Answerer(
        source,
        EngineCatalog(engines, settings.model),
        TopicPublisher(publisher, settings.kafka.interactions_topic, key=lambda e: e.conversation_id),
        policy,
        settings.pseudonym_key.get_secret_value().encode(),
        verifier=CitationVerifier(embedder),
        conversations=ConversationStore(settings.max_conversations, settings.max_history_turns),
        agent=Agent(build_toolbox(settings, source, embedder), settings.agent_max_steps),
    )
    slot.fill(GenerationServicer(answerer))
    watch = EngineHealthWatch(list(engines.values()), server.set_serving, settings.engine_health_period_s)
    watch.start()

    def close() -> None:
        watch.stop()
        publisher.close()
        source.close()
        next(iter(engines.values())).shutdown()

    server.run_until_signal(on_stop=close)


if __name__ == "__main__":
    main()
