"""``python -m services.generation.server``"""

from __future__ import annotations

from copilot.auth import TokenVerifier
from copilot.embedding import OnnxMiniLmEmbedder
from copilot.generation.v1 import generation_pb2_grpc
from copilot.grpc_server import GrpcServer
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from copilot.logs import configure_logging
from copilot.tracing import configure_tracing
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.conversations import ConversationStore
from services.generation.deployment import RayServeEngine
from services.generation.retrieval_client import GrpcPassageSource
from services.generation.service import GenerationServicer
from services.generation.settings import GenerationSettings
from services.generation.verification import CitationVerifier


def main() -> None:
    settings = GenerationSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-generation", settings.telemetry)
    server = GrpcServer("generation", settings, TokenVerifier(settings.auth))
    slot = server.add_service(
        generation_pb2_grpc.add_GenerationServiceServicer_to_server, "copilot.generation.v1.GenerationService"
    )
    server.start()
    ensure_topics(settings.kafka.bootstrap_servers, [settings.kafka.interactions_topic])
    publisher = EventPublisher(
        settings.kafka.bootstrap_servers, settings.kafka.spool_dir / "generation.sqlite"
    )
    engine = RayServeEngine.start(
        settings.engine,
        settings.model,
        settings.model_cache_dir,
        settings.engine_threads,
        settings.context_tokens,
        start_timeout_s=settings.engine_start_timeout_s,
        ray_temp_dir=settings.ray_temp_dir,
    )
    source = GrpcPassageSource(settings.retrieval_target)
    policy = AnswerPolicy(
        default_top_k=settings.default_top_k,
        min_relevance=settings.min_relevance,
        max_question_chars=settings.max_question_chars,
        max_answer_tokens=settings.max_answer_tokens,
    )
    answerer = Answerer(
        source,
        engine,
        TopicPublisher(publisher, settings.kafka.interactions_topic, key=lambda e: e.conversation_id),
        policy,
        settings.pseudonym_key.get_secret_value().encode(),
        # One thread: a handful of sentences per answer, and the model needs the cores more.
        verifier=CitationVerifier(OnnxMiniLmEmbedder(intra_op_num_threads=1)),
        conversations=ConversationStore(settings.max_conversations, settings.max_history_turns),
    )
    slot.fill(GenerationServicer(answerer))
    server.set_serving(True)

    def close() -> None:
        publisher.close()
        source.close()
        engine.shutdown()

    server.run_until_signal(on_stop=close)


if __name__ == "__main__":
    main()
