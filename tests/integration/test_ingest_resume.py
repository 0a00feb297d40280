"""A batch ingest killed midway, twice (the CLI, then the ingest server, each with SIGKILL), resumes by
running it again: every document ends up stored exactly once and the finished ones come back unchanged.

Real processes as `copilot up` runs them: the ingest server (`python -m services.ingest.server`) with its
embedder, Tansu for its events, the dev issuer's tokens, and `copilot ingest` as a subprocess. The store
host runs in the test process so the test can look inside it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from copilot.auth import ApiKeyVerifier
from copilot.cli import DEFAULT_PARALLEL_INGESTS
from copilot.devissuer import DevIssuer
from copilot.grpc_server import GrpcServer
from copilot.launcher import Component, Stack, grpc_serving
from copilot.store.v1 import store_pb2_grpc
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.host import StoreHostSettings
from copilot.vectorstore.port import point_id_for
from copilot.vectorstore.remote import StoreServicer
from services.ingest.chunking import chunk
from services.ingest.parsing import parse
from services.ingest.pipeline import document_id_for
from tests.conftest import REPO, SAMPLE_USERS, free_port
from tests.integration.store_standins import document_hashes

pytestmark = pytest.mark.slow

DOCUMENTS = 30
STORE_KEY = "resume-test-store-key-0123456789"
SUMMARY = re.compile(
    r"ingested (?:(\d+) of )?(\d+) files in [\d.]+ s: (\d+) new, (\d+) updated, (\d+) unchanged, (\d+) failed"
)


def _document(number: int) -> str:
    topics = ["budgets", "travel", "hiring", "vendors", "security", "facilities"]
    paragraphs = [
        f"Section {section} of policy {number} explains how {topic} are planned, approved and reviewed "
        f"by the owners of policy {number}, with examples and exceptions for each region. " * 4
        for section, topic in enumerate(topics)
    ]
    return f"# Policy {number}\n\n" + "\n\n".join(paragraphs) + "\n"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "access.yaml").write_text("groups: [finance]\n")
    for number in range(DOCUMENTS):
        (folder / f"policy-{number:02d}.md").write_text(_document(number))
    return folder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[EdgeChunkStore, int]]:
    """The embedded store host, as `copilot up` runs it, in this process."""
    settings = StoreHostSettings(port=0, path=tmp_path / "edge", api_key=SecretStr(STORE_KEY))
    engine = EdgeChunkStore(settings.path, settings.dimension)
    server = GrpcServer("store", settings, ApiKeyVerifier(settings.api_key))
    slot = server.add_service(
        store_pb2_grpc.add_StoreServiceServicer_to_server, "copilot.store.v1.StoreService"
    )
    server.start()
    slot.fill(StoreServicer(engine))
    server.set_serving(True)
    yield engine, server.port
    server.stop(1)
    engine.close()


class IngestServer:
    """`python -m services.ingest.server` in its own process group, started and killed at will."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.ingest.server"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while not grpc_serving(self.port):
            assert self.process.poll() is None, f"ingest server exited: {self.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"ingest server not serving: {self.log.read_text()[-3000:]}"
            time.sleep(0.2)
        return self.process.pid

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture
def ingest_server(
    store: tuple[EdgeChunkStore, int], issuer: DevIssuer, kafka_bootstrap: str, tmp_path: Path
) -> Iterator[IngestServer]:
    port = free_port()
    prefix = "COPILOT_INGEST_"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        f"{prefix}PORT": str(port),
        f"{prefix}LOG_FORMAT": "text",
        f"{prefix}AUTH__ISSUER": issuer.issuer,
        f"{prefix}AUTH__AUDIENCE": issuer.audience,
        f"{prefix}KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        f"{prefix}KAFKA__SPOOL_DIR": str(tmp_path / "spool"),
        f"{prefix}KAFKA__DOCUMENTS_TOPIC": f"documents-{port}",
        f"{prefix}STORE__EMBEDDED_TARGET": f"127.0.0.1:{store[1]}",
        f"{prefix}STORE__EMBEDDED_API_KEY": STORE_KEY,
        f"{prefix}CONSUME_REQUESTS": "false",
    }
    server = IngestServer(env, port, tmp_path / "ingest.log")
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


def _save_stack(home: Path, issuer: DevIssuer, ingest: IngestServer, ingest_pid: int) -> None:
    """The state file `copilot ingest` finds the services by, as `copilot up` writes it."""
    components = [Component("ingest", ingest_pid, ingest.port, "grpc")]
    Stack(str(home), issuer.issuer, issuer.audience, str(SAMPLE_USERS), components).save()


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_killed_batch_resumes_without_duplicates(
    corpus: Path,
    store: tuple[EdgeChunkStore, int],
    ingest_server: IngestServer,
    issuer: DevIssuer,
    tmp_path: Path,
) -> None:
    engine, _ = store
    files = sorted(corpus.glob("*.md"))
    document_ids = {document_id_for("acme", str(f.resolve())): f for f in files}
    home = tmp_path / "home"
    env = {**os.environ, "COPILOT_HOME": str(home), "COLUMNS": "400"}
    command = [sys.executable, "-m", "copilot.cli", "ingest", str(corpus)]

    def stored() -> int:
        return sum(document_hashes(engine, document_id) is not None for document_id in document_ids)

    def summary(output: str) -> tuple[int, int, int, int, int, int]:
        match = SUMMARY.search(output)
        assert match is not None, output
        done, total, new, updated, unchanged, failed = match.groups()
        return int(done or total), int(total), int(new), int(updated), int(unchanged), int(failed)

    _save_stack(home, issuer, ingest_server, ingest_server.start())

    # 1. The CLI dies midway.
    cli = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: stored() >= 8, 300, "8 documents stored")
    cli.send_signal(signal.SIGKILL)
    cli.wait(30)
    # The server finishes the document it was given before the kill; wait until nothing changes.
    settled, last_change, count = stored(), time.monotonic(), -1
    while time.monotonic() - last_change < 3:
        count = stored()
        if count != settled:
            settled, last_change = count, time.monotonic()
        time.sleep(0.05)
    after_cli_kill = settled
    assert 8 <= after_cli_kill < DOCUMENTS, "the batch must be cut short for this test to mean anything"

    # 2. Run again; the ingest server dies midway. The CLI reports what it did and how to resume.
    cli = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: stored() >= after_cli_kill + 8, 300, "8 more documents stored")
    ingest_server.kill()
    _, second_output = cli.communicate(timeout=120)
    assert cli.returncode == 2, second_output
    assert "is unavailable" in second_output and "run the same command again to resume" in second_output
    done, total, new, updated, unchanged, failed = summary(second_output)
    assert total == DOCUMENTS and done < DOCUMENTS and updated == failed == 0
    # The documents still in the server's hands when the CLI was killed (as many as it keeps in flight)
    # may have been stored by then or by this run.
    assert after_cli_kill <= unchanged <= after_cli_kill + DEFAULT_PARALLEL_INGESTS
    after_server_kill = stored()
    assert after_server_kill < DOCUMENTS

    # 3. Restart the server and run once more: it completes, skipping every finished document.
    _save_stack(home, issuer, ingest_server, ingest_server.start())
    third = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)

    assert third.returncode == 0, third.stderr
    done, total, new, updated, unchanged, failed = summary(third.stderr)
    assert (done, total, new + unchanged, updated, failed) == (DOCUMENTS, DOCUMENTS, DOCUMENTS, 0, 0)
    # A document the killed server had stored but not yet announced is announced now, and reported new.
    assert after_server_kill - DEFAULT_PARALLEL_INGESTS <= unchanged <= after_server_kill

    # Every document is stored exactly once, with the chunks a clean ingest makes of it.
    expected = {
        document_id: len(chunk(parse(f.name, f.read_bytes()))) for document_id, f in document_ids.items()
    }
    points = engine.query([1.0] + [0.0] * 383, "acme", ["group:finance"], 10 * sum(expected.values()))
    chunks_of = Counter(p.payload["document_id"] for p in points)
    assert chunks_of == Counter(expected)
    assert len({p.point_id for p in points}) == len(points) == engine.count() == sum(expected.values())
    assert {p.point_id for p in points} == {
        point_id_for(p.payload["document_id"], p.payload["chunk_index"]) for p in points
    }
    assert all(
        {p.payload["chunk_index"] for p in points if p.payload["document_id"] == document_id}
        == set(range(count))
        for document_id, count in expected.items()
    )
    print(
        f"\nresume: CLI killed with {after_cli_kill}/{DOCUMENTS} documents stored, server killed with "
        f"{after_server_kill}/{DOCUMENTS}; last run {DOCUMENTS - after_server_kill} new, {after_server_kill} "
        f"unchanged; {len(points)} chunks stored, none twice"
    )
