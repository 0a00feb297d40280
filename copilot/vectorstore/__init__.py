"""Chunk storage behind one port, with an in-process (Qdrant Edge) and a server (Qdrant) adapter."""

from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.port import ChunkStore, DocumentAccess, ScoredChunk, StoredChunk, point_id_for
from copilot.vectorstore.qdrant_server import QdrantServerChunkStore

__all__ = [
    "ChunkStore",
    "DocumentAccess",
    "EdgeChunkStore",
    "QdrantServerChunkStore",
    "ScoredChunk",
    "StoredChunk",
    "point_id_for",
]
