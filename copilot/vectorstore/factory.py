"""Opens the chunk store the settings name."""

from __future__ import annotations

from copilot.settings import StoreSettings
from copilot.vectorstore.port import ChunkStore
from copilot.vectorstore.remote import RemoteChunkStore


def open_store(settings: StoreSettings, dimension: int, wait_s: float = 30.0) -> ChunkStore:
    if settings.kind == "embedded":
        store = RemoteChunkStore(settings.embedded_target, settings.embedded_api_key.get_secret_value())
        store.wait_ready(wait_s)
        return store
    from qdrant_client import QdrantClient

    from copilot.vectorstore.qdrant_server import QdrantServerChunkStore

    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    client = QdrantClient(url=settings.qdrant_url, api_key=api_key, timeout=30)
    return QdrantServerChunkStore(client, settings.collection, dimension)
