"""Bad documents in a batch, through the real ingest gRPC server (real tokens, embedder and Qdrant's
engine) and through `copilot ingest`: each fails alone with a reason naming it, the rest is stored."""

from __future__ import annotations

import functools
import io
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pypdf
import pytest
from rich.console import Console

from copilot import cli
from copilot.auth import TokenVerifier
from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.embedding import MiniLmEmbedder
from copilot.events.v1 import events_pb2
from copilot.grpc_client import bearer, open_channel
from copilot.grpc_server import GrpcServer
from copilot.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from copilot.launcher import Component, Stack
from copilot.ratelimit import RateLimitSettings
from copilot.settings import AuthSettings
from copilot.vectorstore.edge import EdgeChunkStore
from services.ingest.pipeline import IngestPipeline, document_id_for
from services.ingest.service import IngestServicer
from services.ingest.settings import IngestSettings
from tests.conftest import SAMPLE_USERS
from tests.integration.store_standins import document_hashes
from tests.unit.test_parsing import make_docx, make_pdf, zip_bomb

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
MAX_REQUEST_BYTES = 6 * 1024 * 1024


class CollectedEvents:
    def __init__(self) -> None:
        self.events: list[events_pb2.DocumentEvent] = []

    def publish(self, event: events_pb2.DocumentEvent) -> None:
        self.events.append(event)


@dataclass
class Ingest:
    pipeline: IngestPipeline
    store: EdgeChunkStore
    events: CollectedEvents
    auth: AuthSettings

    def serve(self, rate_limit: RateLimitSettings) -> GrpcServer:
        """A real ingest gRPC server in front of the shared pipeline."""
        settings = IngestSettings(
            port=0,
            auth=self.auth,
            max_document_bytes=MAX_DOCUMENT_BYTES,
            max_receive_message_bytes=MAX_REQUEST_BYTES,
            rate_limit=rate_limit,
        )
        server = GrpcServer("ingest", settings, TokenVerifier(self.auth))
        slot = server.add_service(
            ingest_pb2_grpc.add_IngestServiceServicer_to_server, "copilot.ingest.v1.IngestService"
        )
        server.start()
        slot.fill(IngestServicer(self.pipeline, settings.ingest_role, settings.max_document_bytes))
        server.set_serving(True)
        return server


@pytest.fixture(scope="module")
def ingest(auth_settings: AuthSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    embedder = MiniLmEmbedder()
    store = EdgeChunkStore(tmp_path_factory.mktemp("edge") / "edge", embedder.dimension)
    events = CollectedEvents()
    yield Ingest(IngestPipeline(store, embedder, events), store, events, auth_settings)
    store.close()


@pytest.fixture(scope="module")
def ingest_target(ingest: Ingest) -> Iterator[str]:
    server = ingest.serve(RateLimitSettings(requests_per_second=0))
    yield f"127.0.0.1:{server.port}"
    server.stop(1)


def _encrypted_pdf() -> bytes:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(make_pdf([["Secret salaries."]])))
    writer.encrypt(user_password="s3cret")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _memo(topic: str) -> str:
    paragraphs = [
        f"Paragraph {i} of the {topic} memo covers budgets, owners and deadlines. " * 6 for i in range(4)
    ]
    return f"# {topic.title()} memo\n\n" + "\n\n".join(paragraphs) + "\n"


GOOD = {
    "budget.md": _memo("budget").encode(),
    "travel.md": _memo("travel").encode(),
    "vendors.md": _memo("vendors").encode(),
    "terms.docx": make_docx("Payment Terms"),
    # Far deeper than Python's recursion limit: flattened, not refused.
    "deep.html": (
        "<div>" * 100_000 + "<p>Found at the bottom of the page.</p>" + "</div>" * 100_000
    ).encode(),
}


@functools.cache
def bad_documents() -> dict[str, tuple[bytes, grpc.StatusCode, str]]:
    """name: (content, status code, what the message must say besides the file name)"""
    large = b"words " * (MAX_DOCUMENT_BYTES // 6 + 100)
    return {
        "broken.pdf": (
            b"%PDF-1.7\nthis is not really a pdf",
            grpc.StatusCode.INVALID_ARGUMENT,
            "not a readable PDF",
        ),
        "locked.pdf": (_encrypted_pdf(), grpc.StatusCode.INVALID_ARGUMENT, "password-protected"),
        "empty.md": (b"", grpc.StatusCode.INVALID_ARGUMENT, "empty (0 bytes)"),
        "program.txt": (
            b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4,
            grpc.StatusCode.INVALID_ARGUMENT,
            "NUL bytes",
        ),
        "photo.txt": (b"\xff\xd8\xff\xe0 JFIF", grpc.StatusCode.INVALID_ARGUMENT, "not valid UTF-8 text"),
        "latin1.txt": (
            "Café au lait, crème brûlée.".encode("latin-1"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not valid UTF-8 text (byte 0xe9 at offset 3)",
        ),
        "bomb.docx": (
            zip_bomb(make_docx(), "word/document.xml", 300 * 1024 * 1024, level=1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "over the 268,435,456-byte limit; refusing what looks like a zip bomb",
        ),
        "tool.exe": (b"MZ\x90\x00", grpc.StatusCode.INVALID_ARGUMENT, "file type '.exe' is not supported"),
        "large.txt": (
            large,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"it is {len(large):,} bytes, over the {MAX_DOCUMENT_BYTES:,}-byte limit",
        ),
        # Over what the server accepts in one message: gRPC itself refuses it, naming both sizes.
        "enormous.txt": (
            b"words " * (MAX_REQUEST_BYTES // 6 + 100),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"vs. {MAX_REQUEST_BYTES})",
        ),
    }


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Refused by the servicer or by gRPC before the pipeline, so no failed DocumentEvent is published for them.
REFUSED_BEFORE_PARSING = {"large.txt", "enormous.txt"}


def _batch() -> list[tuple[str, bytes]]:
    """Good and bad documents interleaved, so every bad one has work to do after it."""
    good, bad = list(GOOD.items()), [(name, content) for name, (content, _, _) in bad_documents().items()]
    batch = []
    while good or bad:
        batch.extend(bad[:2])
        batch.extend(good[:1])
        bad, good = bad[2:], good[1:]
    return batch


def test_each_bad_document_fails_alone_with_a_clear_reason(
    ingest: Ingest, ingest_target: str, issuer: DevIssuer
) -> None:
    stub = ingest_pb2_grpc.IngestServiceStub(open_channel(ingest_target))
    token = issuer.mint("ops")
    chunks_before, events_before = ingest.store.count(), len(ingest.events.events)
    created: dict[str, int] = {}
    refused: dict[str, grpc.RpcError] = {}
    for name, content in _batch():
        request = ingest_pb2.IngestDocumentRequest(
            uri=f"/grpc-batch/{name}",
            filename=name,
            content=content,
            access=common_pb2.AccessControl(groups=["finance"]),
        )
        try:
            reply = stub.IngestDocument(request, metadata=bearer(token), timeout=120)
        except grpc.RpcError as exc:
            refused[name] = exc
        else:
            assert reply.outcome == ingest_pb2.INGEST_OUTCOME_CREATED, name
            created[name] = reply.chunk_count

    assert set(created) == set(GOOD) and all(count > 0 for count in created.values())
    assert set(refused) == set(bad_documents())
    for name, (content, code, reason) in bad_documents().items():
        error = refused[name]
        assert error.code() == code, (name, error.details())
        assert reason in error.details(), (name, error.details())
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert f"cannot ingest {name!r}" in error.details()
        else:
            sizes = re.search(r"\((\d+) vs\. (\d+)\)", error.details())
            assert sizes is not None and int(sizes[1]) > len(content) and int(sizes[2]) == MAX_REQUEST_BYTES
    # The good documents are all there, each once.
    assert ingest.store.count() - chunks_before == sum(created.values())
    for name in GOOD:
        assert document_hashes(ingest.store, document_id_for("acme", f"/grpc-batch/{name}")) is not None
    failed = {
        e.uri.rsplit("/", 1)[1]: e.reason
        for e in ingest.events.events[events_before:]
        if e.change == events_pb2.DOCUMENT_CHANGE_FAILED
    }
    assert set(failed) == set(bad_documents()) - REFUSED_BEFORE_PARSING
    assert all(bad_documents()[name][2] in reason for name, reason in failed.items())


def test_an_overlong_uri_is_refused_before_anything_is_stored(
    ingest: Ingest, ingest_target: str, issuer: DevIssuer
) -> None:
    stub = ingest_pb2_grpc.IngestServiceStub(open_channel(ingest_target))
    request = ingest_pb2.IngestDocumentRequest(
        uri="/long/" + "x" * 3000,
        filename="memo.md",
        content=b"# Memo\n\nShort.",
        access=common_pb2.AccessControl(groups=["finance"]),
    )
    chunks_before = ingest.store.count()

    with pytest.raises(grpc.RpcError) as info:
        stub.IngestDocument(request, metadata=bearer(issuer.mint("ops")), timeout=60)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the limit is 2,048" in info.value.details()
    assert ingest.store.count() == chunks_before


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"filename": "a" * 5_000_000 + ".bin"}, "filename is 5,000,004 characters; the limit is 2,048"),
        ({"groups": ["g" * 300]}, "access.groups[0] is 300 characters; the limit is 256"),
        ({"users": ["bob", "u" * 1_000_000]}, "access.users[1] is 1,000,000 characters; the limit is 256"),
        (
            {"groups": [f"g{i}" for i in range(1001)]},
            "access lists 1,001 groups and users; the limit is 1,000",
        ),
        ({"classification": "c" * 100}, "access.classification is 100 characters; the limit is 64"),
    ],
)
def test_an_overlong_caller_string_is_refused_before_anything_is_stored_or_published(
    ingest: Ingest, ingest_target: str, issuer: DevIssuer, change: dict[str, object], why: str
) -> None:
    """Each of these would travel in the document's DocumentEvent; over 1 MB, Kafka drops the event."""
    stub = ingest_pb2_grpc.IngestServiceStub(open_channel(ingest_target))
    fields: dict[str, object] = {"filename": "memo.md", "groups": ["finance"]} | change
    access = {k: fields.pop(k) for k in ("groups", "users", "classification") if k in fields}
    request = ingest_pb2.IngestDocumentRequest(
        uri="/overlong/memo.md",
        content=b"# Memo\n\nShort.",
        access=common_pb2.AccessControl(**access),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )
    chunks_before, events_before = ingest.store.count(), len(ingest.events.events)

    with pytest.raises(grpc.RpcError) as info:
        stub.IngestDocument(request, metadata=bearer(issuer.mint("ops")), timeout=60)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == why
    assert ingest.store.count() == chunks_before
    assert ingest.events.events[events_before:] == []


def test_a_failure_event_carries_the_longest_filename_allowed_well_under_kafkas_limit(
    ingest: Ingest, ingest_target: str, issuer: DevIssuer
) -> None:
    stub = ingest_pb2_grpc.IngestServiceStub(open_channel(ingest_target))
    request = ingest_pb2.IngestDocumentRequest(
        uri="/overlong/tool.exe",
        filename="t" * 2044 + ".exe",
        content=b"MZ\x90\x00",
        access=common_pb2.AccessControl(groups=["g" * 256] * 500, users=["u" * 256] * 500),
    )
    events_before = len(ingest.events.events)

    with pytest.raises(grpc.RpcError) as info:
        stub.IngestDocument(request, metadata=bearer(issuer.mint("ops")), timeout=60)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [event] = ingest.events.events[events_before:]
    assert event.change == events_pb2.DOCUMENT_CHANGE_FAILED and "'.exe' is not supported" in event.reason
    assert event.ByteSize() < 1_048_576 // 2


def test_deleting_an_overlong_uri_is_refused_without_an_event(
    ingest: Ingest, ingest_target: str, issuer: DevIssuer
) -> None:
    stub = ingest_pb2_grpc.IngestServiceStub(open_channel(ingest_target))
    events_before = len(ingest.events.events)

    with pytest.raises(grpc.RpcError) as info:
        stub.DeleteDocument(
            ingest_pb2.DeleteDocumentRequest(uri="/" + "x" * 5_000_000),
            metadata=bearer(issuer.mint("ops")),
            timeout=60,
        )

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "uri is 5,000,001 characters; the limit is 2,048"
    assert ingest.events.events[events_before:] == []


@pytest.fixture
def stack_home(
    ingest: Ingest, issuer: DevIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A stack state file naming this test's issuer and an ingest server, which `copilot ingest` looks up.

    That server's rate limit is low, so the batch runs into it and the CLI has to wait rather than fail.
    """
    server = ingest.serve(RateLimitSettings(requests_per_second=20, burst=3))
    home = tmp_path / "home"
    components = [Component("ingest", os.getpid(), server.port, "grpc")]
    Stack(str(home), issuer.issuer, issuer.audience, str(SAMPLE_USERS), components).save()
    monkeypatch.setenv("COPILOT_HOME", str(home))
    yield home
    server.stop(1)


def test_cli_reports_ok_unchanged_and_failed_with_reasons(
    ingest: Ingest,
    stack_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "batch [q3]"  # brackets would be read as markup if printed unescaped
    folder.mkdir()
    (folder / "access.yaml").write_text("groups: [finance]\n")
    for name, content in _batch():
        (folder / name).write_bytes(content)

    caplog.set_level(logging.INFO, logger="copilot.grpc_server")

    def run() -> tuple[int, str]:
        output = io.StringIO()
        # A terminal, so that the progress bar is drawn too.
        monkeypatch.setattr(cli, "err", Console(file=output, width=400, force_terminal=True))
        code = cli.main(["ingest", str(folder)])
        return code, output.getvalue()

    code, drawn = run()
    first = ANSI_ESCAPE.sub("", drawn)

    assert code == 1, first
    assert "docs/s" in first and "chunks/s" in first, "the bar shows both rates"
    total = len(GOOD) + len(bad_documents())
    assert f"ingested {total} files in " in first
    assert f": {len(GOOD)} new, 0 updated, 0 unchanged, {len(bad_documents())} failed;" in first
    failure_lines = [line.strip() for line in first.splitlines() if line.strip().startswith("failed ")]
    assert len(failure_lines) == len(bad_documents())
    for name, (_, _, reason) in bad_documents().items():
        [line] = [line for line in failure_lines if line.startswith(f"failed {folder / name}: ")]
        assert reason in line, line

    code, drawn = run()
    again = ANSI_ESCAPE.sub("", drawn)

    assert code == 1, again
    assert (
        f": 0 new, 0 updated, {len(GOOD)} unchanged, {len(bad_documents())} failed; 0 chunks written" in again
    )
    # The server did turn calls away for their rate; the CLI waited those out instead of failing files.
    assert any(r.__dict__.get("fields", {}).get("code") == "RESOURCE_EXHAUSTED" for r in caplog.records)


def test_cli_ingests_a_file_whose_name_is_not_utf8_under_its_escaped_name(
    ingest: Ingest, stack_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "access.yaml").write_text("groups: [finance]\n")
    (folder / "memo.md").write_text(_memo("menu"))
    # A Latin-1 name from an old share: Python keeps the 0xe9 byte as a lone surrogate, which
    # protobuf cannot encode.
    (Path(os.fsdecode(bytes(folder))) / os.fsdecode(b"caf\xe9-menu.txt")).write_text(_memo("cafe"))
    # And one whose name, \xe9 spelled out, is what the first one's escaped form would be, beside
    # another Latin-1 name: neither may overwrite the other.
    (folder / "bar\\xe9.txt").write_text(_memo("bar"))
    (Path(os.fsdecode(bytes(folder))) / os.fsdecode(b"bar\xe9.txt")).write_text(_memo("other bar"))

    def run() -> tuple[int, str]:
        output = io.StringIO()
        monkeypatch.setattr(cli, "err", Console(file=output, width=400))
        code = cli.main(["ingest", str(folder), "--parallel", "1"])
        return code, output.getvalue()

    code, shown = run()

    assert code == 1, shown
    assert "ingested 4 files in " in shown and ": 3 new, 0 updated, 0 unchanged, 1 failed;" in shown, shown
    [failed] = [line.strip() for line in shown.splitlines() if line.strip().startswith("failed ")]
    assert failed == (
        f"failed {folder}/bar\\xe9.txt: its name is not UTF-8, and its escaped form names another "
        f"file: {folder.resolve()}/bar\\xe9.txt"
    )
    for uri in (f"{folder.resolve()}/caf\\xe9-menu.txt", f"{folder.resolve()}/bar\\xe9.txt"):
        assert document_hashes(ingest.store, document_id_for("acme", uri)) is not None, uri

    code, shown = run()  # the same escaped name each run: nothing is ingested twice

    assert code == 1 and ": 0 new, 0 updated, 3 unchanged, 1 failed;" in shown, shown
