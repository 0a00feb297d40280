"""Writers of one document racing each other converge on the newest write's whole version.

Two ``QdrantServerChunkStore`` adapters over one shared ``QdrantClient(":memory:")`` stand for two ingest
replicas writing to one Qdrant server (the Helm chart may run several; their document locks are per
process). Each replica reaches the shared client through a ``HeldClient``, which can hold one call, before
or after it runs, on ``threading.Event``s: one writer runs in a thread and stops there while the other
runs to the end, so every interleaving is forced, not hoped for. Held before its write, a writer's upsert
lands after the other's delete; held after it, the other writer runs between its upsert and its delete.

The same operations then run on the edge engine (one process, whose writes take turns) in both orders,
which must leave what the server leaves. The last tests race two real ingest pipelines the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from qdrant_client import QdrantClient

from copilot.events.v1 import events_pb2
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.port import (
    CHUNK_COUNT_FIELD,
    ChunkStore,
    StoredChunk,
    StoredVersion,
    point_id_for,
)
from copilot.vectorstore.qdrant_server import QdrantServerChunkStore
from services.ingest.access import Access
from services.ingest.pipeline import IngestPipeline, document_id_for
from tests.integration.store_standins import HashEmbedder

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8
DOC = "memo"
WAIT_S = 10


@dataclass
class Hold:
    reached: threading.Event
    go: threading.Event


class HeldClient:
    """One replica's handle on the shared client: every call passes through, except that the next call of
    a method given to ``hold`` waits, before or after it runs, until the test sets the hold's ``go``."""

    def __init__(self, shared: QdrantClient) -> None:
        self._shared = shared
        self._holds: dict[str, tuple[bool, Hold]] = {}

    def hold(self, method: str, after: bool) -> Hold:
        hold = Hold(threading.Event(), threading.Event())
        self._holds[method] = (after, hold)
        return hold

    def close(self) -> None:
        # The replicas share one client; the test closes it once.
        pass

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._shared, name)
        if name not in self._holds:
            return attribute

        def held(*args: Any, **kwargs: Any) -> Any:
            after, hold = self._holds.pop(name)
            if not after:
                hold.reached.set()
                assert hold.go.wait(WAIT_S)
            result = attribute(*args, **kwargs)
            if after:
                hold.reached.set()
                assert hold.go.wait(WAIT_S)
            return result

        return held


def replica(client: HeldClient) -> QdrantServerChunkStore:
    return QdrantServerChunkStore(cast(QdrantClient, client), "chunks", DIM)


@dataclass(frozen=True)
class Version:
    content_hash: str
    access_hash: str
    acl: tuple[str, ...]
    chunk_count: int

    def chunks(self) -> list[StoredChunk]:
        return [
            StoredChunk(
                point_id_for(DOC, index),
                [1.0, float(index)] + [0.5] * (DIM - 2),
                {
                    "document_id": DOC,
                    "chunk_index": index,
                    "text": f"chunk {index} of {self.content_hash}",
                    "tenant": "acme",
                    "acl": list(self.acl),
                    "classification": "internal",
                    "content_hash": self.content_hash,
                    "access_hash": self.access_hash,
                    "fingerprint": f"{self.content_hash}:{self.access_hash}",
                    CHUNK_COUNT_FIELD: self.chunk_count,
                },
            )
            for index in range(self.chunk_count)
        ]


#: Every ACL entry below, so that a query with them finds every chunk, whoever may read it.
EVERY_ENTRY = ["group:hr", "user:bob", "group:legal"]
BASE_ACL = ("group:hr", "user:bob")
REVOKED_ACL = ("group:hr",)


@dataclass(frozen=True)
class Write:
    """One writer's operation at one revision, as ingest makes it: a replace, an ACL-only update of the
    base version's content (a full replace under the same revision when it reports 0), or a delete."""

    kind: Literal["replace", "update", "delete"]
    version: Version | None = None

    @property
    def method(self) -> str:
        """The call that writes: the one held before or after."""
        return "set_payload" if self.kind == "update" else "upsert"

    def run(self, store: ChunkStore, revision: int) -> None:
        version = self.version
        if version is None:
            store.delete_document(DOC, revision)
            return
        if self.kind == "update":
            updated = store.update_access(
                DOC,
                "acme",
                version.acl,
                "internal",
                version.access_hash,
                f"{version.content_hash}:{version.access_hash}",
                revision=revision,
                content_hash=version.content_hash,
            )
            if updated:
                return
        store.replace_document(DOC, version.chunks(), revision)


BASE_REVISION, OLDER, NEWER = 1, 2, 3


def _base(chunk_count: int) -> Version:
    return Version("v0", "a0", BASE_ACL, chunk_count)


def _update(base: Version) -> Write:
    return Write("update", Version(base.content_hash, "a-revoked", REVOKED_ACL, base.chunk_count))


def _replace(content_hash: str, acl: tuple[str, ...], chunk_count: int) -> Write:
    return Write("replace", Version(content_hash, f"access-of-{content_hash}", acl, chunk_count))


# Name: (base version, older write, newer write). Every kind of write ingest makes races every other, the
# newer version holding more chunks than the older one, and fewer.
RACES = {
    "replace-then-shorter-replace": (_base(3), _replace("v1", BASE_ACL, 5), _replace("v2", REVOKED_ACL, 2)),
    "replace-then-longer-replace": (_base(3), _replace("v1", BASE_ACL, 2), _replace("v2", REVOKED_ACL, 5)),
    "replace-then-acl-update-of-longer": (_base(5), _replace("v1", BASE_ACL, 2), _update(_base(5))),
    "replace-then-acl-update-of-shorter": (_base(2), _replace("v1", BASE_ACL, 5), _update(_base(2))),
    "acl-update-then-shorter-replace": (_base(5), _update(_base(5)), _replace("v1", REVOKED_ACL, 2)),
    "acl-update-then-longer-replace": (_base(2), _update(_base(2)), _replace("v1", REVOKED_ACL, 5)),
    "replace-then-delete": (_base(3), _replace("v1", BASE_ACL, 5), Write("delete")),
    "delete-then-replace": (_base(3), Write("delete"), _replace("v1", REVOKED_ACL, 2)),
}


def _chunks(store: ChunkStore) -> list[dict[str, Any]]:
    hits = store.query([1.0] + [0.5] * (DIM - 1), "acme", EVERY_ENTRY, limit=100)
    return sorted((h.payload for h in hits), key=lambda p: int(p["chunk_index"]))


def _assert_holds_only(store: ChunkStore, newer: Write) -> None:
    """Every chunk of the document is of the newer write's version, and that version is whole."""
    version = newer.version
    if version is None:
        assert _chunks(store) == [] and store.count() == 0
        assert store.stored_version(DOC) == StoredVersion("", "", 0, "", NEWER)
        return
    chunks = _chunks(store)
    assert [(c["content_hash"], c["access_hash"], tuple(c["acl"])) for c in chunks] == [
        (version.content_hash, version.access_hash, version.acl)
    ] * version.chunk_count
    assert [c["chunk_index"] for c in chunks] == list(range(version.chunk_count))
    assert store.count() == version.chunk_count
    stored = StoredVersion(version.content_hash, version.access_hash, version.chunk_count, "", NEWER)
    assert store.stored_version(DOC) == stored


@pytest.fixture
def shared() -> Iterator[QdrantClient]:
    client = QdrantClient(":memory:")
    yield client
    client.close()


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("held", ["older", "newer"])
@pytest.mark.parametrize("race", RACES)
def test_racing_writers_leave_only_the_newer_version_whole(
    race: str, held: str, when: str, shared: QdrantClient, tmp_path: Path
) -> None:
    base, older, newer = RACES[race]
    first, second = HeldClient(shared), HeldClient(shared)
    replica_a, replica_b = replica(first), replica(second)
    replica_a.replace_document(DOC, base.chunks(), BASE_REVISION)
    writes = {"older": (older, OLDER), "newer": (newer, NEWER)}
    held_write, held_revision = writes[held]
    other_write, other_revision = writes["newer" if held == "older" else "older"]
    # Replica A runs the held write in a thread and stops at its write call; B runs the other meanwhile.
    hold = first.hold(held_write.method, after=when == "after")
    with ThreadPoolExecutor(1) as pool:
        running: Future[None] = pool.submit(held_write.run, replica_a, held_revision)
        assert hold.reached.wait(WAIT_S)
        other_write.run(replica_b, other_revision)
        hold.go.set()
        running.result(WAIT_S)
    _assert_holds_only(replica_a, newer)
    server_chunks = _chunks(replica_a)

    # The same writes on the edge engine, one after the other, in either order.
    for n, order in enumerate([(older, newer), (newer, older)]):
        edge = EdgeChunkStore(tmp_path / f"edge-{n}", DIM)
        try:
            edge.replace_document(DOC, base.chunks(), BASE_REVISION)
            for write in order:
                write.run(edge, OLDER if write is older else NEWER)
            _assert_holds_only(edge, newer)
            assert _chunks(edge) == server_chunks
        finally:
            edge.close()


@pytest.mark.parametrize(("meanwhile", "revision"), [(DOC, 20), ("late", 5)], ids=["raised", "unread"])
def test_tombstones_written_during_a_purge_stay_out_of_it(
    meanwhile: str, revision: int, shared: QdrantClient
) -> None:
    first = HeldClient(shared)
    purging, deleting = replica(first), replica(HeldClient(shared))
    purging.delete_document(DOC, 1)
    purging.delete_document("old", 2)
    # The purge has read the two tombstones below its cutoff; before it deletes, replica B raises the
    # memo's above the cutoff, or leaves another below it that the purge did not read.
    hold = first.hold("delete", after=False)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(purging.purge_tombstones, 10)
        assert hold.reached.wait(WAIT_S)
        deleting.delete_document(meanwhile, revision)
        hold.go.set()
        removed = running.result(WAIT_S)
    assert purging.stored_version("old") is None
    assert purging.stored_version(meanwhile) == StoredVersion("", "", 0, "", revision)
    assert removed == (1 if meanwhile == DOC else 2)
    # The one the purge did not read goes in the next round; the raised one stays.
    assert purging.purge_tombstones(10) == (0 if meanwhile == DOC else 1)


# Two real ingest pipelines, one per replica, each over its own adapter on the shared client.
MEMO_URI = "/docs/memo.md"
DOCUMENT_ID = document_id_for("acme", MEMO_URI)
FIRST = b"# Memo\n\nThe first version."
LONG = ("# Memo\n\n" + "\n\n".join(f"Paragraph {i} about budgets. " * 12 for i in range(8))).encode()
SHORT = b"# Memo\n\nOne short paragraph now."
WITH_BOB = Access(tenant="acme", groups=("finance",), users=("bob",), public=False)
WITHOUT_BOB = Access(tenant="acme", groups=("finance",), users=(), public=False)
EVERYONE_HERE = ["group:finance", "user:bob"]
#: (older content, newer content): the newer version with fewer chunks than the older, and with more.
SIZES = pytest.mark.parametrize(("older", "newer"), [(LONG, SHORT), (SHORT, LONG)], ids=["shorter", "longer"])


class Events:
    def __init__(self) -> None:
        self.events: list[events_pb2.DocumentEvent] = []

    def publish(self, event: events_pb2.DocumentEvent) -> None:
        self.events.append(event)


def _pipeline(store: ChunkStore | HeldClient) -> IngestPipeline:
    return IngestPipeline(
        replica(store) if isinstance(store, HeldClient) else store, HashEmbedder(DIM), Events()
    )


def _snapshot(store: ChunkStore) -> list[dict[str, Any]]:
    """The memo's chunks as stored, less what tells one write from another of the same version."""
    hits = store.query([1.0] * DIM, "acme", EVERYONE_HERE, limit=100)
    chunks = [h.payload for h in hits if h.payload["document_id"] == DOCUMENT_ID]
    assert len(chunks) == store.count()
    volatile = ("modified_at", "unannounced")
    return sorted(
        ({k: v for k, v in c.items() if k not in volatile} for c in chunks),
        key=lambda c: int(c["chunk_index"]),
    )


def _alone(content: bytes, access: Access, tmp_path: Path) -> list[dict[str, Any]]:
    """What the edge engine holds when nothing but ``content`` was ingested."""
    edge = EdgeChunkStore(tmp_path / "alone", DIM)
    try:
        _pipeline(edge).ingest(MEMO_URI, "memo.md", content, access)
        return _snapshot(edge)
    finally:
        edge.close()


def _race(held: Callable[[], object], hold: Hold, other: Callable[[], object]) -> None:
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(held)
        assert hold.reached.wait(WAIT_S)
        other()
        hold.go.set()
        running.result(WAIT_S)


@pytest.mark.parametrize("when", ["before", "after"])
@SIZES
def test_the_newer_of_two_replicas_replaces_wins_whole(
    when: str, older: bytes, newer: bytes, shared: QdrantClient, tmp_path: Path
) -> None:
    first = HeldClient(shared)
    a, b = _pipeline(first), _pipeline(HeldClient(shared))
    a.ingest(MEMO_URI, "memo.md", FIRST, WITH_BOB)
    # Replica A starts a new version that bob may read; replica B, asked later, another without bob.
    hold = first.hold("upsert", after=when == "after")
    _race(
        lambda: a.ingest(MEMO_URI, "memo.md", older, WITH_BOB),
        hold,
        lambda: b.ingest(MEMO_URI, "memo.md", newer, WITHOUT_BOB),
    )
    reader = replica(HeldClient(shared))
    assert _snapshot(reader) == _alone(newer, WITHOUT_BOB, tmp_path)
    assert reader.query([1.0] * DIM, "acme", ["user:bob"], limit=100) == []


@pytest.mark.parametrize("when", ["before", "after"])
@SIZES
def test_an_access_revocation_survives_an_older_replace_on_another_replica(
    when: str, older: bytes, newer: bytes, shared: QdrantClient, tmp_path: Path
) -> None:
    first = HeldClient(shared)
    a, b = _pipeline(first), _pipeline(HeldClient(shared))
    a.ingest(MEMO_URI, "memo.md", newer, WITH_BOB)
    # A starts a new version bob may read; B, asked later, removes bob from the stored one: an
    # access-only update when it reads before A's upsert lands, a full replace when after.
    hold = first.hold("upsert", after=when == "after")
    _race(
        lambda: a.ingest(MEMO_URI, "memo.md", older, WITH_BOB),
        hold,
        lambda: b.ingest(MEMO_URI, "memo.md", newer, WITHOUT_BOB),
    )
    reader = replica(HeldClient(shared))
    assert _snapshot(reader) == _alone(newer, WITHOUT_BOB, tmp_path)
    assert reader.query([1.0] * DIM, "acme", ["user:bob"], limit=100) == []


@SIZES
def test_an_access_revocation_landing_between_an_older_replaces_upsert_and_delete_survives_it(
    older: bytes, newer: bytes, shared: QdrantClient, tmp_path: Path
) -> None:
    first, second = HeldClient(shared), HeldClient(shared)
    a, b = _pipeline(first), _pipeline(second)
    a.ingest(MEMO_URI, "memo.md", newer, WITH_BOB)
    # A reads the stored version, then B does: B's revocation is the newer and takes the access-only
    # path. A's upsert lands before B's update, A's delete after it.
    before_upsert = first.hold("upsert", after=False)
    before_update = second.hold("set_payload", after=False)
    with ThreadPoolExecutor(2) as pool:
        replace = pool.submit(a.ingest, MEMO_URI, "memo.md", older, WITH_BOB)
        assert before_upsert.reached.wait(WAIT_S)
        revoke = pool.submit(b.ingest, MEMO_URI, "memo.md", newer, WITHOUT_BOB)
        assert before_update.reached.wait(WAIT_S)
        # A's next scroll is the read between its upsert and its delete.
        before_delete = first.hold("scroll", after=False)
        before_upsert.go.set()
        assert before_delete.reached.wait(WAIT_S)
        before_update.go.set()
        revoke.result(WAIT_S)
        before_delete.go.set()
        replace.result(WAIT_S)
    reader = replica(HeldClient(shared))
    assert _snapshot(reader) == _alone(newer, WITHOUT_BOB, tmp_path)
    assert reader.query([1.0] * DIM, "acme", ["user:bob"], limit=100) == []


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_delete_on_one_replica_is_not_undone_by_an_older_replace_on_another(
    when: str, shared: QdrantClient, tmp_path: Path
) -> None:
    first = HeldClient(shared)
    a, b = _pipeline(first), _pipeline(HeldClient(shared))
    a.ingest(MEMO_URI, "memo.md", FIRST, WITH_BOB)
    hold = first.hold("upsert", after=when == "after")
    _race(
        lambda: a.ingest(MEMO_URI, "memo.md", LONG, WITH_BOB),
        hold,
        lambda: b.delete("acme", MEMO_URI),
    )
    reader = replica(HeldClient(shared))
    assert _snapshot(reader) == []
    # Ingested again afterwards, it is back: the tombstone holds off older writes only.
    b.ingest(MEMO_URI, "memo.md", SHORT, WITHOUT_BOB)
    assert _snapshot(reader) == _alone(SHORT, WITHOUT_BOB, tmp_path)
