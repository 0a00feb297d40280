"""``python -m services.retrieval.server``"""

from __future__ import annotations

from copilot.auth import TokenVerifier
from copilot.embedding import MiniLmEmbedder
from copilot.grpc_server import GrpcServer
from copilot.logs import configure_logging
from copilot.reranker import OnnxCrossEncoder
from copilot.retrieval.v1 import retrieval_pb2_grpc
from copilot.tracing import configure_metrics, configure_tracing
from copilot.vectorstore.factory import open_store
from services.retrieval.explain import AccessExplainer
from services.retrieval.search import Searcher
from services.retrieval.service import RetrievalServicer
from services.retrieval.settings import RetrievalSettings


def main() -> None:
    settings = RetrievalSettings()
    configure_logging(settings.log_format, settings.log_level)
    configure_tracing("copilot-retrieval", settings.telemetry)
    configure_metrics("copilot-retrieval", settings.telemetry)
    server = GrpcServer("retrieval", settings, TokenVerifier(settings.auth))
    slot = server.add_service(
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server, "copilot.retrieval.v1.RetrievalService"
    )
    server.start()
    embedder = MiniLmEmbedder(threads=settings.embedding_threads, cache_dir=settings.embedding_cache_dir)
    store = open_store(settings.store, embedder.dimension)
    searcher = Searcher(
        store,
        embedder,
        settings.default_top_k,
        settings.max_top_k,
        settings.max_query_chars,
        role_groups=settings.role_groups,
        max_chunks_per_document=settings.max_chunks_per_document,
        default_mode=settings.default_mode,
        dense_weight=settings.dense_weight,
        lexical_weight=settings.lexical_weight,
        rrf_k=settings.rrf_k,
        merge_adjacent_chunks=settings.merge_adjacent_chunks,
        max_audience=settings.max_audience,
        reranker=OnnxCrossEncoder(settings.rerank_threads) if settings.reranker == "cross-encoder" else None,
        rerank_candidates=settings.rerank_candidates,
    )
    explainer = AccessExplainer(store, role_groups=settings.role_groups, auditor_role=settings.auditor_role)
    slot.fill(RetrievalServicer(searcher, explainer))
    server.set_serving(True)
    server.run_until_signal(on_stop=store.close)


if __name__ == "__main__":
    main()
