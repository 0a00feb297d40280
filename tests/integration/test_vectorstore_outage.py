"""A chunk store that cannot serve (no server, a timeout, 5xx, 429, a refused key) raises
``DependencyUnavailable``, which the ingest consumer retries and gRPC services answer as UNAVAILABLE;
a request the store refuses as malformed stays an error of the request.

Real connections: qdrant-client against a closed port on 127.0.0.1 (the kernel refuses the connection) and
against a small HTTP server on 127.0.0.1 answering with a chosen status, and the store host over gRPC.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from copilot.errors import DependencyUnavailable, InvalidInput
from copilot.vectorstore.port import StoredChunk, point_id_for
from copilot.vectorstore.qdrant_server import QdrantServerChunkStore
from copilot.vectorstore.remote import RemoteChunkStore
from services.ingest.access import Access
from services.ingest.pipeline import IngestPipeline
from tests.integration.store_standins import HashEmbedder, served_edge_store

pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning"),
]

DIM = 8
API_KEY = "qdrant-key-that-must-not-be-shown"


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(url: str) -> QdrantClient:
    return QdrantClient(url=url, api_key=API_KEY, https=False, timeout=2, check_compatibility=False)


def test_qdrant_unreachable_at_start_is_dependency_unavailable() -> None:
    port = _closed_port()
    with pytest.raises(DependencyUnavailable) as raised:
        QdrantServerChunkStore(_client(f"http://127.0.0.1:{port}"), "chunks", DIM)
    message = str(raised.value)
    assert f"http://127.0.0.1:{port}" in message and "ConnectError" in message
    assert API_KEY not in message


def test_every_call_of_a_qdrant_store_whose_server_went_away_is_dependency_unavailable() -> None:
    store = QdrantServerChunkStore(QdrantClient(":memory:"), "chunks", DIM)
    port = _closed_port()
    # The server goes away after start-up; credentials in the url must not reach the message either.
    store._client = _client(f"http://ingest:url-password@127.0.0.1:{port}")
    chunk = StoredChunk(point_id_for("doc", 0), [1.0] * DIM, {"document_id": "doc", "chunk_index": 0})
    calls = {
        "replace_document": lambda: store.replace_document("doc", [chunk]),
        "delete_document": lambda: store.delete_document("doc"),
        "document_access": lambda: store.document_access("doc"),
        "stored_version": lambda: store.stored_version("doc"),
        "update_access": lambda: store.update_access("doc", "acme", ["everyone"], "internal", "a", "f"),
        "mark_announced": lambda: store.mark_announced("doc", "mark"),
        "query": lambda: store.query([1.0] * DIM, "acme", ["everyone"], 5),
        "count": store.count,
    }
    try:
        for name, call in calls.items():
            with pytest.raises(DependencyUnavailable) as raised:
                call()
            message = str(raised.value)
            # delete_document is a replace with no chunks.
            step = "replace_document" if name == "delete_document" else name
            assert f"127.0.0.1:{port}" in message and f"({step})" in message, message
            assert API_KEY not in message and "url-password" not in message
    finally:
        store.close()


class Events:
    def publish(self, event: object) -> None:
        raise AssertionError("nothing was stored, so nothing may be announced")


def test_ingest_into_an_unreachable_qdrant_raises_dependency_unavailable_for_a_retry() -> None:
    store = QdrantServerChunkStore(QdrantClient(":memory:"), "chunks", DIM)
    store._client = _client(f"http://127.0.0.1:{_closed_port()}")
    pipeline = IngestPipeline(store, HashEmbedder(DIM), Events())
    try:
        with pytest.raises(DependencyUnavailable, match="Qdrant at http://127.0.0.1:"):
            pipeline.ingest("/docs/a.md", "a.md", b"# A\n\nhello world.", Access(tenant="acme", public=True))
    finally:
        store.close()


class _Answering(BaseHTTPRequestHandler):
    """Answers every request with the server's chosen status and a Qdrant-style error body."""

    def _answer(self) -> None:
        server = self.server
        assert isinstance(server, _StatusServer)
        body = b'{"status":{"error":"as the test wants"},"time":0.0}'
        self.send_response(server.status)
        for name, value in server.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _StatusServer(ThreadingHTTPServer):
    status = 200
    headers: dict[str, str] = {}


@pytest.fixture
def status_server() -> Iterator[_StatusServer]:
    server = _StatusServer(("127.0.0.1", 0), _Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "headers"),
    [(503, {}), (500, {}), (502, {}), (429, {"Retry-After": "1"}), (429, {}), (401, {}), (403, {})],
)
def test_qdrant_statuses_that_may_pass_are_dependency_unavailable(
    status_server: _StatusServer, status: int, headers: dict[str, str]
) -> None:
    status_server.status, status_server.headers = status, headers
    url = f"http://127.0.0.1:{status_server.server_address[1]}"
    with pytest.raises(DependencyUnavailable) as raised:
        QdrantServerChunkStore(_client(url), "chunks", DIM)
    assert url in str(raised.value)
    assert ("rate limited" if headers else f"HTTP {status}") in str(raised.value)


@pytest.mark.parametrize("status", [400, 404, 422])
def test_qdrant_refusing_the_request_itself_stays_an_error_of_the_request(
    status_server: _StatusServer, status: int
) -> None:
    status_server.status = status
    with pytest.raises(UnexpectedResponse) as raised:
        QdrantServerChunkStore(_client(f"http://127.0.0.1:{status_server.server_address[1]}"), "chunks", DIM)
    assert raised.value.status_code == status


def test_store_host_unreachable_is_dependency_unavailable() -> None:
    port = _closed_port()
    remote = RemoteChunkStore(f"127.0.0.1:{port}", "a-store-key", timeout_s=2)
    try:
        with pytest.raises(DependencyUnavailable, match=f"127.0.0.1:{port}"):
            remote.stored_version("doc")
        with pytest.raises(DependencyUnavailable, match=f"127.0.0.1:{port}"):
            remote.replace_document("doc", [])
    finally:
        remote.close()


def test_store_host_refusing_a_request_is_invalid_input_not_an_outage(tmp_path: Path) -> None:
    with served_edge_store(tmp_path / "shard", DIM) as (_, _, remote):
        # Retrying these would fail the same way for ever: the caller must give them up, not wait.
        other = StoredChunk(point_id_for("other", 0), [1.0] * DIM, {"document_id": "other", "chunk_index": 0})
        with pytest.raises(InvalidInput, match="document_id"):
            remote.replace_document("doc", [other])
        with pytest.raises(InvalidInput, match="dimensions"):
            remote.query([1.0] * (DIM + 1), "acme", ["everyone"], 5)
        assert remote.count() == 0
