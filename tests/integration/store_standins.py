"""The store host on loopback, and an embedder stand-in for tests about storage rather than ranking."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from copilot.auth import ApiKeyVerifier
from copilot.grpc_server import GrpcServer
from copilot.settings import ServiceSettings
from copilot.store.v1 import store_pb2_grpc
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.port import ChunkStore
from copilot.vectorstore.remote import RemoteChunkStore, StoreServicer


def serve_store_host(store: ChunkStore, key: str, port: int = 0) -> GrpcServer:
    """The real store host (API-key check, health) over ``store`` on ``port`` (0: a free one), serving."""
    server = GrpcServer("store", ServiceSettings(port=port), ApiKeyVerifier(SecretStr(key)))
    slot = server.add_service(
        store_pb2_grpc.add_StoreServiceServicer_to_server, "copilot.store.v1.StoreService"
    )
    server.start()
    slot.fill(StoreServicer(store))
    server.set_serving(True)
    return server


@contextmanager
def served_edge_store(
    path: Path, dimension: int
) -> Iterator[tuple[EdgeChunkStore, GrpcServer, RemoteChunkStore]]:
    """An edge store, the store host serving it, and a ready client; closes client, then host, then store."""
    edge = EdgeChunkStore(path, dimension)
    key = "a-store-key-for-this-test-only"
    server = serve_store_host(edge, key)
    remote = RemoteChunkStore(f"127.0.0.1:{server.port}", key)
    try:
        remote.wait_ready(10)
        yield edge, server, remote
    finally:
        remote.close()
        server.stop(1)
        edge.close()


class HashEmbedder:
    """Vectors from each text's SHA-256: the same text always gets the same vector, and no model loads."""

    model_id = "sha256-test"

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        digests = [hashlib.sha256(t.encode()).digest()[: self.dimension] for t in texts]
        return [[b / 255 + 0.01 for b in digest] for digest in digests]


def document_hashes(store: ChunkStore, document_id: str) -> tuple[str, str] | None:
    """The stored version's (content_hash, access_hash), or None if the document has no chunks."""
    version = store.stored_version(document_id)
    return version.hashes if version is not None and version.chunk_count else None
