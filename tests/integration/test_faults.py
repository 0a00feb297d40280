"""Faults under real processes on loopback, killed with SIGKILL: the broker during answers, and retrieval;
a full disk under the event spool; and the limits every server and channel applies (rate limit, deadlines,
retries of idempotent calls only).

The generation servicer runs in this process (llama.cpp with SmolLM2-135M, no Ray: Ray Serve's own
recovery is tested in test_generation_grpc.py) behind a real gRPC server with real signed tokens. Around
it everything is a separate process: Tansu, the embedded store host and the retrieval server.

Covered elsewhere: the monitor killed and restarted with no lost and no duplicate flags
(test_monitor_consumer.py), ingest killed mid-batch (test_ingest_resume.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from kafka import KafkaConsumer

from copilot.auth import TokenVerifier
from copilot.broker import start_tansu
from copilot.devissuer import DevIssuer
from copilot.embedding import MiniLmEmbedder
from copilot.errors import DependencyUnavailable
from copilot.events.v1 import events_pb2
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.grpc_server import RETRY_AFTER_METADATA, GrpcServer
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from copilot.launcher import grpc_serving
from copilot.ratelimit import RateLimitSettings
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from copilot.settings import AuthSettings
from copilot.vectorstore.remote import RemoteChunkStore
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.engine import EngineCatalog, build_engine
from services.generation.retrieval_client import GrpcPassageSource
from services.generation.settings import GenerationSettings
from services.generation.verification import CitationVerifier
from services.ingest.access import Access
from services.ingest.pipeline import IngestPipeline
from services.retrieval.settings import RetrievalSettings
from tests.conftest import REPO, free_port
from tests.integration.generation_standins import serve_generation

MODEL = "smollm2-135m"
STORE_KEY = "faults-store-key-0123456789"
TOPIC = "faults.interactions.v1"
DOCUMENTS = {
    "/faults/vacation.md": "# Vacation\n\nFull-time employees receive 25 days of paid vacation per year.\n",
    "/faults/expenses.md": "# Expenses\n\nHotel stays are reimbursed up to 180 EUR per night in London.\n",
}
QUESTIONS = ["How many vacation days do employees get?", "What is the hotel limit per night in London?"]


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while not grpc_serving(self.port):
            assert self.proc.poll() is None, f"{self.name} exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"{self.name} not serving after {timeout_s} s"
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Stack:
    generation: generation_pb2_grpc.GenerationServiceStub
    retrieval: Process
    publisher: EventPublisher
    kafka_port: int
    broker: subprocess.Popen[bytes]
    tmp: Path


def _env(prefix: str, port: int, auth: AuthSettings, store_port: int) -> dict[str, str]:
    return {
        f"{prefix}PORT": str(port),
        f"{prefix}LOG_FORMAT": "text",
        f"{prefix}AUTH__ISSUER": auth.issuer,
        f"{prefix}AUTH__AUDIENCE": auth.audience,
        f"{prefix}STORE__EMBEDDED_TARGET": f"127.0.0.1:{store_port}",
        f"{prefix}STORE__EMBEDDED_API_KEY": STORE_KEY,
    }


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, auth_settings: AuthSettings, kafka_bootstrap: str
) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    store_port, retrieval_port, kafka_port = free_port(), free_port(), free_port()
    store = Process(
        "store",
        [sys.executable, "-m", "copilot.vectorstore.host"],
        {
            "COPILOT_STORE_PORT": str(store_port),
            "COPILOT_STORE_PATH": str(tmp / "edge"),
            "COPILOT_STORE_API_KEY": STORE_KEY,
            "COPILOT_STORE_LOG_FORMAT": "text",
        },
        store_port,
        tmp / "store.log",
    )
    retrieval = Process(
        "retrieval",
        [sys.executable, "-m", "services.retrieval.server"],
        _env("COPILOT_RETRIEVAL_", retrieval_port, auth_settings, store_port),
        retrieval_port,
        tmp / "retrieval.log",
    )
    broker = start_tansu(kafka_port, tmp / "tansu.log")
    publisher = EventPublisher(f"127.0.0.1:{kafka_port}", tmp / "spool.sqlite")
    source = GrpcPassageSource(f"127.0.0.1:{retrieval_port}")
    server: GrpcServer | None = None
    stack: Stack | None = None
    try:
        store.start()
        retrieval.start()
        embedder = MiniLmEmbedder()
        chunks = RemoteChunkStore(f"127.0.0.1:{store_port}", STORE_KEY)
        ensure_topics(kafka_bootstrap, ["faults.documents.v1"], partitions=1)
        document_events = EventPublisher(kafka_bootstrap, tmp / "documents.sqlite")
        pipeline = IngestPipeline(
            chunks, embedder, TopicPublisher(document_events, "faults.documents.v1", lambda e: e.document_id)
        )
        for uri, text in DOCUMENTS.items():
            pipeline.ingest(uri, uri, text.encode(), Access(tenant="acme", public=True))
        document_events.close()
        chunks.close()
        ensure_topics(f"127.0.0.1:{kafka_port}", [TOPIC], partitions=1)
        engine = build_engine("llama_cpp", MODEL, tmp / "models", 2, 2048)
        answerer = Answerer(
            source,
            EngineCatalog({MODEL: engine}, MODEL),
            TopicPublisher(publisher, TOPIC, key=lambda e: e.conversation_id),
            AnswerPolicy(max_answer_tokens=24),
            b"faults-key",
            verifier=CitationVerifier(embedder),
        )
        server = serve_generation(answerer, auth_settings)
        server.set_serving(True)
        stub = generation_pb2_grpc.GenerationServiceStub(open_channel(f"127.0.0.1:{server.port}"))
        stack = Stack(stub, retrieval, publisher, kafka_port, broker, tmp)
        yield stack
    finally:
        if server is not None:
            server.stop(1)
        source.close()
        publisher.close(timeout_s=1)
        retrieval.stop()
        store.stop()
        # A test may have replaced the broker (killed it and started another); stop the one running now.
        running = stack.broker if stack is not None else broker
        running.kill()
        running.wait(10)


def ask(stack: Stack, token: str, question: str) -> generation_pb2.AnswerFinal:
    request = generation_pb2.AnswerRequest(question=question)
    for reply in stack.generation.Answer(request, metadata=bearer(token), timeout=120):
        if reply.HasField("final"):
            return reply.final
    raise AssertionError("the answer stream ended without its final message")


def consume_interactions(bootstrap: str, wanted: set[str], timeout_s: float = 60) -> set[str]:
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=f"faults-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
    )
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not wanted <= seen and time.monotonic() < deadline:
            for record in consumer:
                event = events_pb2.InteractionEvent()
                event.ParseFromString(record.value)
                seen.add(event.event_id)
    finally:
        consumer.close()
    return seen


@pytest.mark.slow
def test_answers_keep_flowing_while_the_broker_is_down_and_every_event_arrives_after(
    stack: Stack, issuer: DevIssuer
) -> None:
    token = issuer.mint("alice")
    before = ask(stack, token, QUESTIONS[0])
    assert before.interaction_id
    assert stack.publisher.flush(30), "the broker is up: the spool should drain"

    # Answers run in a loop while the broker is killed under them.
    answered: list[tuple[float, generation_pb2.AnswerFinal]] = []
    errors: list[BaseException] = []

    def keep_asking() -> None:
        try:
            for i in range(8):
                final = ask(stack, token, QUESTIONS[i % 2])
                answered.append((time.monotonic(), final))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    asking = threading.Thread(target=keep_asking)
    asking.start()
    while not answered and asking.is_alive():
        time.sleep(0.05)
    stack.broker.send_signal(signal.SIGKILL)
    stack.broker.wait(10)
    killed_at = time.monotonic()
    asking.join(300)
    assert not errors, f"answers failed while the broker was down: {errors[0]!r}"
    assert len(answered) == 8
    after_kill = {final.interaction_id for at, final in answered if at > killed_at + 0.5}
    assert len(after_kill) >= 5, "most answers should have finished with the broker gone"
    assert stack.publisher.pending() >= len(after_kill), "their events wait in the spool"

    # Tansu keeps topics in memory: a fresh broker on the same port is empty, so only what the spool
    # replays can arrive there.
    stack.broker = start_tansu(stack.kafka_port, stack.tmp / "tansu-2.log")
    bootstrap = f"127.0.0.1:{stack.kafka_port}"
    ensure_topics(bootstrap, [TOPIC], partitions=1)
    assert stack.publisher.flush(90), f"{stack.publisher.pending()} events still spooled"
    arrived = consume_interactions(bootstrap, after_kill)
    assert after_kill <= arrived, f"lost: {sorted(after_kill - arrived)}"


@pytest.mark.slow
def test_retrieval_down_is_unavailable_with_a_clear_message_and_recovers(
    stack: Stack, issuer: DevIssuer
) -> None:
    token = issuer.mint("alice")
    assert not ask(stack, token, QUESTIONS[0]).refused

    stack.retrieval.kill()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        ask(stack, token, QUESTIONS[0])
    failed_after = time.monotonic() - started
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    details = info.value.details()
    assert f"retrieval at 127.0.0.1:{stack.retrieval.port}" in details and "UNAVAILABLE" in details
    # Search is retried with backoff (about 1.4 s in all), then the answer fails instead of hanging.
    assert failed_after < 10, f"the failure took {failed_after:.1f} s"

    stack.retrieval.start()
    returned_at = time.monotonic()
    while True:
        try:
            final = ask(stack, token, QUESTIONS[1])
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - returned_at < 15, "generation did not recover after retrieval returned"
            time.sleep(0.5)
    assert final.interaction_id and not final.refused


def test_a_full_spool_disk_is_unavailable_with_the_reason_and_recovers(tmp_path: Path) -> None:
    # No broker at this address: every event stays in the spool. SQLite's page cap stands in for a full
    # disk; it fails the write with the same SQLITE_FULL error.
    publisher = EventPublisher(f"127.0.0.1:{free_port()}", tmp_path / "spool.sqlite")
    # The cap is per connection, so it must be set on the spool's own.
    spool_db = publisher._spool._db
    pages = spool_db.execute("PRAGMA page_count").fetchone()[0]
    spool_db.execute(f"PRAGMA max_page_count = {pages + 2}")
    event = events_pb2.DocumentEvent(uri="x" * 3000)
    with pytest.raises(DependencyUnavailable) as info:
        for _ in range(100):
            publisher.publish("t", "k", event)
    assert "cannot write the event spool" in str(info.value) and "disk is full" in str(info.value)
    kept = publisher.pending()
    assert kept >= 1, "what was written before the disk filled stays spooled"
    spool_db.execute("PRAGMA max_page_count = 1073741823")
    publisher.publish("t", "k", event)
    assert publisher.pending() == kept + 1
    publisher.close(timeout_s=0.1)


# --- limits, deadlines and retries through a real server and channel --------------------------------------


class Panic(BaseException):
    """What a native extension's panic looks like to Python (pyo3's PanicException): not an Exception."""


@dataclass
class FlakyRetrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    """A retrieval servicer that fails its first calls or stalls, to see what the channel does about it.
    (The real retrieval's failures are tested above; here the client's behaviour is under test.)"""

    failures_left: int = 0
    stall_s: float = 0.0
    panic: bool = False
    calls: int = 0

    def Search(  # noqa: N802
        self, request: retrieval_pb2.SearchRequest, context: grpc.ServicerContext
    ) -> retrieval_pb2.SearchResponse:
        self.calls += 1
        time.sleep(self.stall_s)
        if self.panic:
            raise Panic("called `Option::unwrap()` on a `None` value")
        if self.failures_left > 0:
            self.failures_left -= 1
            raise DependencyUnavailable("vector store is restarting; retry shortly")
        return retrieval_pb2.SearchResponse()


@pytest.fixture
def flaky(auth_settings: AuthSettings) -> Iterator[tuple[FlakyRetrieval, str]]:
    servicer = FlakyRetrieval()
    settings = RetrievalSettings(
        port=0, auth=auth_settings, rate_limit=RateLimitSettings(requests_per_second=2, burst=3)
    )
    server = GrpcServer("retrieval", settings, TokenVerifier(auth_settings))
    slot = server.add_service(
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server, "copilot.retrieval.v1.RetrievalService"
    )
    server.start()
    slot.fill(servicer)
    server.set_serving(True)
    yield servicer, f"127.0.0.1:{server.port}"
    server.stop(0)


def test_a_caller_over_the_rate_limit_is_told_when_to_retry(
    flaky: tuple[FlakyRetrieval, str], issuer: DevIssuer
) -> None:
    _, target = flaky
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target))
    alice = bearer(issuer.mint("alice"))
    for _ in range(3):
        stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=alice)
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=alice)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 2 requests per second (bursts of 3) per caller; retry in 0." in info.value.details()
    retry_after_ms = int(dict(info.value.trailing_metadata())[RETRY_AFTER_METADATA])
    assert 0 < retry_after_ms <= 500
    # Another person has their own bucket; alice is served again once the wait has passed.
    stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=bearer(issuer.mint("bob")))
    time.sleep(retry_after_ms / 1000)
    stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=alice)


def test_an_idempotent_call_is_retried_through_a_short_outage(
    flaky: tuple[FlakyRetrieval, str], issuer: DevIssuer
) -> None:
    servicer, target = flaky
    servicer.failures_left = 2
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target))
    stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=bearer(issuer.mint("carol")), timeout=10)
    assert servicer.calls == 3, "two failures, then the third attempt succeeded"


def test_retries_give_up_with_the_servers_reason(
    flaky: tuple[FlakyRetrieval, str], issuer: DevIssuer
) -> None:
    servicer, target = flaky
    servicer.failures_left = 100
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target))
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=bearer(issuer.mint("ops")), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "vector store is restarting" in info.value.details()
    assert servicer.calls == 4, "four attempts in all"


def test_a_channel_without_retries_tries_once(flaky: tuple[FlakyRetrieval, str], issuer: DevIssuer) -> None:
    servicer, target = flaky
    servicer.failures_left = 1
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target, retries=False))
    with pytest.raises(grpc.RpcError):
        stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=bearer(issuer.mint("ops")), timeout=10)
    assert servicer.calls == 1


def test_answer_is_never_retried(auth_settings: AuthSettings, issuer: DevIssuer) -> None:
    attempts = []

    class Unavailable(generation_pb2_grpc.GenerationServiceServicer):
        def Answer(  # noqa: N802
            self, request: generation_pb2.AnswerRequest, context: grpc.ServicerContext
        ) -> Iterator[generation_pb2.AnswerResponse]:
            attempts.append(request.question)
            raise DependencyUnavailable("model is restarting; retry shortly")
            yield generation_pb2.AnswerResponse()

    server = GrpcServer(
        "generation", GenerationSettings(port=0, auth=auth_settings), TokenVerifier(auth_settings)
    )
    slot = server.add_service(
        generation_pb2_grpc.add_GenerationServiceServicer_to_server, "copilot.generation.v1.GenerationService"
    )
    server.start()
    slot.fill(Unavailable())
    try:
        stub = generation_pb2_grpc.GenerationServiceStub(open_channel(f"127.0.0.1:{server.port}"))
        with pytest.raises(grpc.RpcError) as info:
            list(
                stub.Answer(generation_pb2.AnswerRequest(question="q"), metadata=bearer(issuer.mint("alice")))
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert attempts == ["q"], "a second attempt would run the model and record the interaction twice"
    finally:
        server.stop(0)


def test_a_call_without_a_timeout_gets_the_channels_deadline(
    flaky: tuple[FlakyRetrieval, str], issuer: DevIssuer
) -> None:
    servicer, target = flaky
    servicer.stall_s = 3.0
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target, unary_deadline_s=0.5))
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=bearer(issuer.mint("alice")))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2.5


def test_a_panic_in_native_code_is_internal_at_once_not_a_hang(
    flaky: tuple[FlakyRetrieval, str], issuer: DevIssuer
) -> None:
    servicer, target = flaky
    servicer.panic = True
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target))
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(retrieval_pb2.SearchRequest(query="q"), metadata=bearer(issuer.mint("alice")), timeout=20)
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "internal error (request id" in info.value.details()
    assert time.monotonic() - started < 5
