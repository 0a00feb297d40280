"""The ingest pipeline on the sample corpus with the real embedder and Qdrant's engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from copilot.embedding import OnnxMiniLmEmbedder
from copilot.events.v1 import events_pb2
from copilot.vectorstore.edge import EdgeChunkStore
from services.ingest.access import Access, access_for, is_sidecar
from services.ingest.errors import IngestError
from services.ingest.pipeline import IngestPipeline, Outcome
from tests.conftest import SAMPLE_CORPUS


class CollectedEvents:
    def __init__(self) -> None:
        self.events: list[events_pb2.DocumentEvent] = []

    def publish(self, event: events_pb2.DocumentEvent) -> None:
        self.events.append(event)


@pytest.fixture(scope="module")
def embedder() -> OnnxMiniLmEmbedder:
    return OnnxMiniLmEmbedder()


@pytest.fixture
def pipeline(
    tmp_path: Path, embedder: OnnxMiniLmEmbedder
) -> Iterator[tuple[IngestPipeline, EdgeChunkStore, CollectedEvents]]:
    store = EdgeChunkStore(tmp_path / "edge", embedder.dimension)
    events = CollectedEvents()
    yield IngestPipeline(store, embedder, events), store, events
    store.close()


def _corpus() -> list[tuple[Path, Access]]:
    files = sorted(p for p in SAMPLE_CORPUS.rglob("*") if p.is_file() and not is_sidecar(p))
    out = []
    for f in files:
        access = access_for(f, SAMPLE_CORPUS, "acme", None)
        assert access is not None, f"{f} has no access.yaml"
        out.append((f, access))
    return out


def test_corpus_ingests_with_acls_and_reingest_is_a_no_op(
    pipeline: tuple, embedder: OnnxMiniLmEmbedder
) -> None:
    ingest, store, events = pipeline
    corpus = _corpus()
    assert {f.suffix for f, _ in corpus} >= {".md", ".html", ".pdf", ".docx"}
    results = [ingest.ingest(str(f), f.name, f.read_bytes(), a) for f, a in corpus]
    assert all(r.outcome is Outcome.CREATED and r.chunk_count > 0 for r in results)
    total = store.count()
    assert total == sum(r.chunk_count for r in results)
    assert [e.change for e in events.events] == [events_pb2.DOCUMENT_CHANGE_INGESTED] * len(corpus)

    again = [ingest.ingest(str(f), f.name, f.read_bytes(), a) for f, a in corpus]
    assert all(r.outcome is Outcome.UNCHANGED for r in again)
    assert store.count() == total

    [vector] = embedder.embed(["What is the Q3 2026 travel budget?"])
    finance = store.query(vector, "acme", ["group:finance", "everyone", "user:alice"], 3)
    assert finance[0].payload["uri"].endswith("q3-2026-budget-memo.md")
    engineering = store.query(vector, "acme", ["group:engineering", "everyone", "user:bob"], 10)
    assert all("finance" not in c.payload["uri"] for c in engineering)


def test_changed_document_replaces_its_chunks_and_delete_removes_them(pipeline: tuple) -> None:
    ingest, store, events = pipeline
    access = Access(tenant="acme", groups=("finance",), users=(), public=False, classification="internal")
    long_text = "# Memo\n\n" + "\n\n".join(
        f"Paragraph {i} about budgets and forecasts. " * 12 for i in range(12)
    )
    first = ingest.ingest("/docs/memo.md", "memo.md", long_text.encode(), access)
    assert first.outcome is Outcome.CREATED and first.chunk_count > 2
    second = ingest.ingest("/docs/memo.md", "memo.md", b"# Memo\n\nNow a single short paragraph.", access)
    assert second.outcome is Outcome.UPDATED and second.chunk_count == 1
    assert store.count() == 1, "no stale chunks of the longer version may remain"
    document_id, deleted = ingest.delete("acme", "/docs/memo.md")
    assert deleted == 1 and store.count() == 0
    assert events.events[-1].change == events_pb2.DOCUMENT_CHANGE_DELETED


def test_bad_document_fails_alone_with_a_reason_event(pipeline: tuple) -> None:
    ingest, store, events = pipeline
    access = Access(tenant="acme", groups=("finance",), users=(), public=False, classification="internal")
    with pytest.raises(IngestError):
        ingest.ingest("/docs/broken.pdf", "broken.pdf", b"%PDF-1.4 this is not really a pdf", access)
    assert events.events[-1].change == events_pb2.DOCUMENT_CHANGE_FAILED
    assert events.events[-1].reason
    ok = ingest.ingest("/docs/ok.md", "ok.md", b"# Fine\n\nStill works.", access)
    assert ok.outcome is Outcome.CREATED
