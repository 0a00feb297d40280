from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from copilot.errors import DependencyUnavailable
from copilot.lexical import encode_document, encode_query
from copilot.vectorstore import (
    ChunkStore,
    DocumentAccess,
    EdgeChunkStore,
    QdrantServerChunkStore,
    StoredChunk,
    point_id_for,
)
from copilot.vectorstore.port import (
    CHUNK_COUNT_FIELD,
    UNANNOUNCED_FIELD,
    Narrowing,
    ScoredChunk,
    StoredVersion,
    uri_ancestors,
)
from copilot.vectorstore.remote import RemoteChunkStore
from tests.integration.store_standins import document_hashes, served_edge_store

# qdrant-client's local mode accepts payload indexes but warns that it ignores them; the server honours them.
pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8

# (document_id, tenant, acl, number of chunks)
CORPUS = [
    ("hr-handbook", "acme", ["group:hr", "everyone"], 5),
    ("finance-q3", "acme", ["group:finance"], 4),
    ("alice-notes", "acme", ["user:alice"], 3),
    ("board-minutes", "acme", ["group:board", "user:carol"], 3),
    ("globex-policy", "globex", ["everyone"], 4),
]


def make_chunks(
    rng: np.random.Generator, document_id: str, tenant: str, acl: list[str], n: int, content_hash: str = "v1"
) -> list[StoredChunk]:
    chunks = []
    for index in range(n):
        payload: dict[str, Any] = {
            "document_id": document_id,
            "chunk_index": index,
            "uri": f"file:///{document_id}",
            "title": document_id.replace("-", " ").title(),
            "text": f"chunk {index} of {document_id}",
            "heading_path": ["Top", f"Section {index}"],
            "page": index + 1,
            "char_start": index * 100,
            "char_end": index * 100 + 99,
            "tenant": tenant,
            "acl": acl,
            "classification": "internal",
            "content_hash": content_hash,
            "access_hash": "a1",
            "fingerprint": f"{content_hash}:a1",
            CHUNK_COUNT_FIELD: n,
        }
        vector = [float(x) for x in rng.normal(size=DIM)]
        chunks.append(StoredChunk(point_id_for(document_id, index), vector, payload))
    return chunks


def version_of(store: ChunkStore, document_id: str) -> StoredVersion | None:
    """``stored_version`` without its revision, which comes from the clock unless a test gives one."""
    version = store.stored_version(document_id)
    return replace(version, revision=0) if version is not None else None


def load_corpus(store: ChunkStore, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    for document_id, tenant, acl, n in CORPUS:
        assert store.replace_document(document_id, make_chunks(rng, document_id, tenant, acl, n)) == 0


def open_store(kind: str, tmp_path: Path) -> ChunkStore:
    if kind == "edge":
        return EdgeChunkStore(tmp_path / "shard", DIM)
    return QdrantServerChunkStore(QdrantClient(":memory:"), "chunks", DIM)


@contextmanager
def edge_and_qdrant(tmp_path: Path) -> Iterator[tuple[ChunkStore, ChunkStore]]:
    edge, server = open_store("edge", tmp_path), open_store("qdrant", tmp_path)
    try:
        yield edge, server
    finally:
        edge.close()
        server.close()


@pytest.fixture(params=["edge", "qdrant"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ChunkStore]:
    opened = open_store(request.param, tmp_path)
    yield opened
    opened.close()


def test_adapters_answer_queries_identically(tmp_path: Path) -> None:
    with edge_and_qdrant(tmp_path) as (edge, server):
        rng = np.random.default_rng(11)
        for s in (edge, server):
            load_corpus(s)
            # A new, shorter version of one document, and a deleted one, on top of the initial load.
            newer = make_chunks(
                np.random.default_rng(3), "hr-handbook", "acme", ["group:hr", "everyone"], 2, "v2"
            )
            assert s.replace_document("hr-handbook", newer) == 3
            assert s.delete_document("board-minutes") == 3
            assert s.update_access("finance-q3", "acme", ["group:legal"], "confidential", "a2", "v1:a2") == 4
            # A replace cut short after its upsert: two chunks of a new version over an old one of five.
            s.replace_document("cut", _cut_replace("cut", ["group:hr"]))
            # Changes not yet announced: one still marked, one announced, one that a newer change's
            # announcement (another mark) leaves marked.
            s.update_access("alice-notes", "acme", ["user:alice"], "internal", "a1", "v1:a1", "mark-1")
            s.update_access("globex-policy", "globex", ["everyone"], "internal", "a1", "v1:a1", "mark-2")
            s.mark_announced("globex-policy", "mark-2")
            s.mark_announced("alice-notes", "mark-0")
        assert edge.count() == server.count() == 18
        for document_id in [*(d[0] for d in CORPUS), "cut", "missing"]:
            assert document_hashes(edge, document_id) == document_hashes(server, document_id), document_id
            assert version_of(edge, document_id) == version_of(server, document_id), document_id
        assert version_of(edge, "alice-notes") == StoredVersion("v1", "a1", 3, "mark-1")
        assert version_of(edge, "globex-policy") == StoredVersion("v1", "a1", 4, "")
        assert version_of(edge, "cut") == StoredVersion("", "", 5, "")
        assert document_hashes(edge, "cut") == ("", "")
        assert document_hashes(edge, "finance-q3") == document_hashes(server, "finance-q3") == ("v1", "a2")
        assert edge.document_access("finance-q3") == server.document_access("finance-q3")

        principal_sets = [
            ["everyone"],
            ["group:finance", "user:bob"],
            ["user:alice", "everyone"],
            ["user:carol"],
            ["group:finance", "user:alice", "everyone"],
            ["group:legal"],
        ]
        for _ in range(4):
            vector = [float(x) for x in rng.normal(size=DIM)]
            for tenant in ("acme", "globex"):
                for principals in principal_sets:
                    got_edge = edge.query(vector, tenant, principals, limit=5)
                    got_server = server.query(vector, tenant, principals, limit=5)
                    assert [c.point_id for c in got_edge] == [c.point_id for c in got_server]
                    assert [c.payload for c in got_edge] == [c.payload for c in got_server]
                    for a, b in zip(got_edge, got_server, strict=True):
                        assert a.score == pytest.approx(b.score, abs=1e-4)
                    for chunk in got_edge:
                        assert chunk.payload["tenant"] == tenant
                        assert set(chunk.payload["acl"]) & set(principals)


def test_query_returns_nearest_permitted_chunks_with_payload(store: ChunkStore) -> None:
    load_corpus(store)
    # load_corpus draws hr-handbook first from the same seed, so these are the stored chunks.
    rng = np.random.default_rng(7)
    hr = make_chunks(rng, "hr-handbook", "acme", ["group:hr", "everyone"], 5)
    hits = store.query(hr[2].vector, "acme", ["everyone"], limit=3)
    assert hits[0].point_id == hr[2].point_id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].payload == hr[2].payload
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.payload["document_id"] for h in hits} == {"hr-handbook"}


def test_permission_filter_runs_inside_the_engine(store: ChunkStore) -> None:
    rng = np.random.default_rng(5)
    target = [1.0] + [0.0] * (DIM - 1)
    # Many forbidden chunks right next to the query: a post-filter with limit 2 would return nothing.
    secret = [
        StoredChunk(c.point_id, [1.0, *[0.01 * x for x in c.vector[1:]]], c.payload)
        for c in make_chunks(rng, "secret", "acme", ["group:board"], 20)
    ]
    store.replace_document("secret", secret)
    visible = make_chunks(rng, "public", "acme", ["everyone"], 2)
    store.replace_document("public", visible)
    hits = store.query(target, "acme", ["user:dave", "everyone"], limit=2)
    assert {h.point_id for h in hits} == {c.point_id for c in visible}


def test_replace_document_removes_stale_chunks(store: ChunkStore) -> None:
    rng = np.random.default_rng(1)
    store.replace_document("doc", make_chunks(rng, "doc", "acme", ["everyone"], 5))
    assert store.replace_document("doc", make_chunks(rng, "doc", "acme", ["everyone"], 3, "v2")) == 2
    assert store.count() == 3
    assert document_hashes(store, "doc") == ("v2", "a1")
    hits = store.query([1.0] * DIM, "acme", ["everyone"], limit=10)
    assert sorted(h.payload["chunk_index"] for h in hits) == [0, 1, 2]
    assert {h.payload["content_hash"] for h in hits} == {"v2"}
    # Same ids again: everything is overwritten in place, nothing is stale.
    assert store.replace_document("doc", make_chunks(rng, "doc", "acme", ["everyone"], 3, "v3")) == 0
    assert document_hashes(store, "doc") == ("v3", "a1")


def _cut_replace(document_id: str, acl: list[str]) -> list[StoredChunk]:
    """What a replace of a five-chunk version by a two-chunk one leaves when it dies between its upsert and
    its delete: the new version's chunks 0 and 1, the old version's chunks 2 to 4."""
    old = make_chunks(np.random.default_rng(21), document_id, "acme", acl, 5, "v1")
    new = make_chunks(np.random.default_rng(22), document_id, "acme", acl, 2, "v2")
    return new + old[2:]


def test_document_hashes_stand_only_for_one_whole_version(store: ChunkStore) -> None:
    rng = np.random.default_rng(6)
    store.replace_document("doc", make_chunks(rng, "doc", "acme", ["everyone"], 5, "v1"))
    assert document_hashes(store, "doc") == ("v1", "a1")
    # Whichever chunk is read, neither version's hashes may pass: a retry of v2 must run the replace again.
    store.replace_document("doc", _cut_replace("doc", ["everyone"]))
    assert document_hashes(store, "doc") == ("", "")
    # Only part of a version written: every stored chunk has its hashes, but fewer than its chunk count.
    v3 = make_chunks(rng, "doc", "acme", ["everyone"], 4, "v3")
    store.replace_document("doc", v3[:3])
    assert document_hashes(store, "doc") == ("", "")
    # One version, but chunks with two access lists.
    other_access = [StoredChunk(c.point_id, c.vector, {**c.payload, "access_hash": "a2"}) for c in v3[2:]]
    store.replace_document("doc", v3[:2] + other_access)
    assert document_hashes(store, "doc") == ("", "")
    store.replace_document("doc", v3)
    assert document_hashes(store, "doc") == ("v3", "a1")
    # Chunks stored before the count existed stand on their hashes alone.
    for c in v3:
        del c.payload[CHUNK_COUNT_FIELD]
    store.replace_document("doc", v3)
    assert document_hashes(store, "doc") == ("v3", "a1")
    store.replace_document(
        "doc", v3[:3] + [StoredChunk(v3[3].point_id, v3[3].vector, {**v3[3].payload, "content_hash": "v1"})]
    )
    assert document_hashes(store, "doc") == ("", "")


def test_replace_with_no_chunks_deletes(store: ChunkStore) -> None:
    store.replace_document("doc", make_chunks(np.random.default_rng(2), "doc", "acme", ["everyone"], 4))
    assert store.replace_document("doc", []) == 4
    assert store.count() == 0


def test_replace_rejects_chunks_of_another_document(store: ChunkStore) -> None:
    chunks = make_chunks(np.random.default_rng(2), "other", "acme", ["everyone"], 1)
    with pytest.raises(ValueError, match="document_id"):
        store.replace_document("doc", chunks)
    assert store.count() == 0


def test_delete_document(store: ChunkStore) -> None:
    load_corpus(store)
    assert store.delete_document("finance-q3") == 4
    assert store.count() == 15
    assert document_hashes(store, "finance-q3") is None
    assert store.query([1.0] * DIM, "acme", ["group:finance"], limit=10) == []
    assert store.delete_document("finance-q3") == 0


def test_document_hashes(store: ChunkStore) -> None:
    assert document_hashes(store, "nope") is None
    store.replace_document(
        "doc", make_chunks(np.random.default_rng(4), "doc", "acme", ["everyone"], 2, "abc")
    )
    assert document_hashes(store, "doc") == ("abc", "a1")


def test_document_access(store: ChunkStore) -> None:
    assert store.document_access("board-minutes") is None
    load_corpus(store)
    assert store.document_access("board-minutes") == DocumentAccess(
        tenant="acme",
        acl=("group:board", "user:carol"),
        classification="internal",
        title="Board Minutes",
        uri="file:///board-minutes",
    )
    store.update_access("board-minutes", "acme", ["user:carol"], "confidential", "a2", "v1:a2")
    access = store.document_access("board-minutes")
    assert access is not None
    assert (access.acl, access.classification) == (("user:carol",), "confidential")
    store.delete_document("board-minutes")
    assert store.document_access("board-minutes") is None


def test_an_unannounced_change_is_read_with_the_hashes_until_announced(store: ChunkStore) -> None:
    chunks = make_chunks(np.random.default_rng(8), "doc", "acme", ["everyone"], 3)
    marked = [StoredChunk(c.point_id, c.vector, {**c.payload, UNANNOUNCED_FIELD: "m1"}) for c in chunks]
    store.replace_document("doc", marked)
    assert version_of(store, "doc") == StoredVersion("v1", "a1", 3, "m1")
    # Announcing another change, one this write replaced, leaves this one's mark.
    store.mark_announced("doc", "m0")
    assert version_of(store, "doc") == StoredVersion("v1", "a1", 3, "m1")
    store.mark_announced("doc", "m1")
    assert version_of(store, "doc") == StoredVersion("v1", "a1", 3, "")
    # The mark is gone from the payload, not emptied.
    assert all(UNANNOUNCED_FIELD not in h.payload for h in store.query([1.0] * DIM, "acme", ["everyone"], 10))
    # An access change writes its mark with the access fields; none given, none written.
    assert store.update_access("doc", "acme", ["group:hr"], "internal", "a2", "v1:a2", "m2") == 3
    assert version_of(store, "doc") == StoredVersion("v1", "a2", 3, "m2")
    store.mark_announced("doc", "m2")
    assert store.update_access("doc", "acme", ["group:hr"], "internal", "a3", "v1:a3") == 3
    assert version_of(store, "doc") == StoredVersion("v1", "a3", 3, "")
    assert store.stored_version("missing") is None


def test_chunks_stored_without_hashes_read_as_empty_hashes(store: ChunkStore) -> None:
    [legacy] = make_chunks(np.random.default_rng(4), "old", "acme", ["everyone"], 1)
    for key in ("content_hash", "access_hash"):
        del legacy.payload[key]
    store.replace_document("old", [legacy])
    assert document_hashes(store, "old") == ("", "")


def test_update_access_rewrites_access_in_place(store: ChunkStore) -> None:
    load_corpus(store)
    # load_corpus draws hr-handbook and then finance-q3 from this seed, so these are the stored chunks.
    rng = np.random.default_rng(7)
    hr = make_chunks(rng, "hr-handbook", "acme", ["group:hr", "everyone"], 5)
    finance = make_chunks(rng, "finance-q3", "acme", ["group:finance"], 4)

    assert store.update_access("finance-q3", "acme", ["group:legal"], "confidential", "a2", "v1:a2") == 4

    assert store.count() == 19
    assert document_hashes(store, "finance-q3") == ("v1", "a2")
    assert store.query(finance[0].vector, "acme", ["group:finance"], limit=10) == []
    hits = store.query(finance[0].vector, "acme", ["group:legal"], limit=10)
    assert [h.point_id for h in hits][0] == finance[0].point_id
    # Same vector, same text: only the access fields changed.
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].payload == {
        **finance[0].payload,
        "acl": ["group:legal"],
        "classification": "confidential",
        "access_hash": "a2",
        "fingerprint": "v1:a2",
    }
    # Other documents keep their access.
    assert {h.point_id for h in store.query([1.0] * DIM, "acme", ["group:hr"], limit=10)} == {
        c.point_id for c in hr
    }
    assert store.update_access("missing", "acme", ["everyone"], "internal", "a", "f") == 0
    assert store.count() == 19


def test_fails_closed_without_identity(store: ChunkStore) -> None:
    load_corpus(store)
    assert store.query([1.0] * DIM, "acme", [], limit=10) == []
    assert store.query([1.0] * DIM, "", ["everyone"], limit=10) == []


def test_other_tenant_sees_nothing(store: ChunkStore) -> None:
    load_corpus(store)
    assert store.query([1.0] * DIM, "initech", ["everyone", "group:hr"], limit=10) == []
    assert {h.payload["tenant"] for h in store.query([1.0] * DIM, "globex", ["everyone"], limit=10)} == {
        "globex"
    }


def test_edge_store_survives_reopen(tmp_path: Path) -> None:
    first = EdgeChunkStore(tmp_path / "shard", DIM)
    load_corpus(first)
    first.close()
    reopened = EdgeChunkStore(tmp_path / "shard", DIM)
    try:
        assert reopened.count() == 19
        assert document_hashes(reopened, "alice-notes") == ("v1", "a1")
        assert len(reopened.query([1.0] * DIM, "acme", ["user:alice"], limit=10)) == 3
    finally:
        reopened.close()


def test_edge_shard_opens_only_once(tmp_path: Path) -> None:
    first = EdgeChunkStore(tmp_path / "shard", DIM)
    try:
        with pytest.raises(Exception, match="WouldBlock"):
            EdgeChunkStore(tmp_path / "shard", DIM)
    finally:
        first.close()


def test_edge_store_rejects_other_dimension(tmp_path: Path) -> None:
    EdgeChunkStore(tmp_path / "shard", DIM).close()
    with pytest.raises(Exception, match="vector size"):
        EdgeChunkStore(tmp_path / "shard", DIM * 2)


def test_remote_store_carries_hashes_and_access_updates_over_grpc(tmp_path: Path) -> None:
    with (
        served_edge_store(tmp_path / "shard", DIM) as (_, server, remote),
        closing(RemoteChunkStore(f"127.0.0.1:{server.port}", "not-the-key-of-this-store")) as intruder,
    ):
        with pytest.raises(DependencyUnavailable, match="wrong API key"):
            intruder.query([1.0] * DIM, "acme", ["everyone"], limit=1)
        assert document_hashes(remote, "finance-q3") is None
        load_corpus(remote)
        assert document_hashes(remote, "finance-q3") == ("v1", "a1")

        assert remote.update_access("finance-q3", "acme", ["group:legal"], "confidential", "a2", "v1:a2") == 4

        assert document_hashes(remote, "finance-q3") == ("v1", "a2")
        assert remote.document_access("finance-q3") == DocumentAccess(
            "acme", ("group:legal",), "confidential", "Finance Q3", "file:///finance-q3"
        )
        assert remote.document_access("missing") is None
        assert remote.query([1.0] * DIM, "acme", ["group:finance"], limit=10) == []
        legal = remote.query([1.0] * DIM, "acme", ["group:legal"], limit=10)
        assert {h.payload["document_id"] for h in legal} == {"finance-q3"}
        assert {h.payload["classification"] for h in legal} == {"confidential"}
        assert remote.update_access("missing", "acme", ["everyone"], "internal", "a", "f") == 0

        assert remote.update_access("alice-notes", "acme", ["user:alice"], "internal", "a1", "f", "m") == 3
        assert version_of(remote, "alice-notes") == StoredVersion("v1", "a1", 3, "m")
        remote.mark_announced("alice-notes", "m")
        assert version_of(remote, "alice-notes") == StoredVersion("v1", "a1", 3, "")
        assert remote.stored_version("missing") is None


# Texts with known word overlap, so lexical rankings are predictable.
TEXTS = {
    "vacuum": "vacuum reclaims storage occupied by dead tuples; autovacuum runs vacuum automatically",
    "index": "create index builds an index; concurrently avoids locking out writes",
    "backup": "pg_dump writes a logical backup of one database; pg_dumpall covers the cluster",
    "wal": "write ahead log segments are archived for point in time recovery",
    "roles": "roles own objects and hold privileges granted by grant",
}
# (document_id, acl, uri, doc_type, modified_at)
DOCS = [
    ("vacuum", ["everyone"], "/manual/admin/vacuum.html", "html", 100.0),
    ("index", ["group:dev"], "/manual/sql/index.html", "html", 200.0),
    ("backup", ["group:dba", "user:erin"], "/manual/admin/backup.pdf", "pdf", 300.0),
    ("wal", ["group:dba"], "/manual/admin/wal.md", "markdown", 400.0),
    ("roles", ["group:dev", "group:dba"], "/wiki/roles.md", "markdown", 500.0),
]


def load_texts(store: ChunkStore) -> None:
    rng = np.random.default_rng(13)
    for document_id, acl, uri, doc_type, modified_at in DOCS:
        [chunk] = make_chunks(rng, document_id, "acme", acl, 1)
        payload = {
            **chunk.payload,
            "text": TEXTS[document_id],
            "uri": uri,
            "doc_type": doc_type,
            "uri_ancestors": uri_ancestors(uri),
            "modified_at": modified_at,
        }
        store.replace_document(
            document_id,
            [StoredChunk(chunk.point_id, chunk.vector, payload, encode_document(TEXTS[document_id]))],
        )


def docs(hits: list[ScoredChunk]) -> list[str]:
    return [h.payload["document_id"] for h in hits]


EVERYONE = ["everyone", "group:dev", "group:dba", "user:erin"]


def test_lexical_query_ranks_by_bm25_within_permissions(store: ChunkStore) -> None:
    load_texts(store)

    assert docs(store.query(encode_query("vacuum dead tuples"), "acme", EVERYONE, 5)) == ["vacuum"]
    assert docs(store.query(encode_query("pg_dump backup"), "acme", EVERYONE, 5)) == ["backup"]
    # Same words, but erin alone may not read the index page.
    assert store.query(encode_query("create index concurrently"), "acme", ["user:erin"], 5) == []
    assert store.query(encode_query("the of and"), "acme", EVERYONE, 5) == []


def test_audience_keeps_only_what_every_member_may_read(store: ChunkStore) -> None:
    load_texts(store)
    vector = [1.0] * DIM

    def visible(audience: tuple[tuple[str, ...], ...]) -> set[str]:
        return set(docs(store.query(vector, "acme", EVERYONE, 10, narrow=Narrowing(audience=audience))))

    assert visible(()) == {"vacuum", "index", "backup", "wal", "roles"}
    assert visible((("group:dev", "everyone"),)) == {"vacuum", "index", "roles"}
    assert visible((("group:dev", "everyone"), ("group:dba", "everyone"))) == {"vacuum", "roles"}
    assert visible((("user:erin", "everyone"),)) == {"vacuum", "backup"}
    assert visible((("everyone",),)) == {"vacuum"}
    # Entries are taken as given: a member without "everyone" does not read public documents.
    assert visible((("group:dev",),)) == {"index", "roles"}
    assert visible((("group:dev", "everyone"), ())) == set()


def test_metadata_filters_narrow_by_folder_type_and_time(store: ChunkStore) -> None:
    load_texts(store)
    vector = [1.0] * DIM

    def found(**narrow: object) -> set[str]:
        return set(docs(store.query(vector, "acme", EVERYONE, 10, narrow=Narrowing(**narrow))))  # type: ignore[arg-type]

    assert found(uri_prefixes=("/manual/admin",)) == {"vacuum", "backup", "wal"}
    assert found(uri_prefixes=("/manual/admin/",)) == {"vacuum", "backup", "wal"}
    assert found(uri_prefixes=("/manual/adm",)) == set()
    assert found(uri_prefixes=("/wiki", "/manual/sql")) == {"roles", "index"}
    assert found(document_types=("markdown",)) == {"wal", "roles"}
    assert found(document_types=("PDF", "html")) == {"vacuum", "index", "backup"}
    assert found(modified_after=200.0, modified_before=400.0) == {"index", "backup"}
    assert found(modified_after=450.0) == {"roles"}
    assert found(uri_prefixes=("/manual",), document_types=("markdown",), modified_before=450.0) == {"wal"}


def test_lexical_query_can_return_dense_vectors(store: ChunkStore) -> None:
    load_texts(store)

    [hit] = store.query(encode_query("write ahead log"), "acme", EVERYONE, 1, with_vector=True)

    assert hit.payload["document_id"] == "wal"
    assert len(hit.vector) == DIM
    assert store.query(encode_query("write ahead log"), "acme", EVERYONE, 1)[0].vector == ()


def test_adapters_agree_on_lexical_and_narrowed_queries(tmp_path: Path) -> None:
    with edge_and_qdrant(tmp_path) as (edge, server):
        for s in (edge, server):
            load_texts(s)
        queries = [
            "vacuum",
            "index writes",
            "backup of the cluster",
            "log recovery",
            "privileges roles grant",
        ]
        narrowings = [
            Narrowing(),
            Narrowing(audience=(("group:dev",),)),
            Narrowing(uri_prefixes=("/manual",), document_types=("html", "pdf")),
            Narrowing(modified_after=150.0, modified_before=450.0),
        ]
        for text in queries:
            for narrow in narrowings:
                for principals in (EVERYONE, ["group:dba"], ["everyone"]):
                    a = edge.query(encode_query(text), "acme", principals, 5, narrow=narrow)
                    b = server.query(encode_query(text), "acme", principals, 5, narrow=narrow)
                    assert docs(a) == docs(b), (text, narrow, principals)
                    for x, y in zip(a, b, strict=True):
                        assert x.score == pytest.approx(y.score, rel=1e-4)


def test_remote_store_carries_lexical_queries_and_narrowing(tmp_path: Path) -> None:
    with served_edge_store(tmp_path / "shard", DIM) as (edge, _, remote):
        load_texts(remote)
        narrow = Narrowing(audience=(("group:dba",),), uri_prefixes=("/manual/admin",), modified_after=150.0)
        lexical = remote.query(
            encode_query("backup log"), "acme", EVERYONE, 5, narrow=narrow, with_vector=True
        )
        assert docs(lexical) == docs(
            edge.query(encode_query("backup log"), "acme", EVERYONE, 5, narrow=narrow)
        )
        assert set(docs(lexical)) == {"backup", "wal"}
        assert all(len(h.vector) == DIM for h in lexical)
        assert remote.query([1.0] * DIM, "acme", EVERYONE, 5, narrow=Narrowing(audience=((),))) == []


def _store_without_grants(kind: str, tmp_path: Path) -> ChunkStore:
    """A store whose chunks were written before ``grants`` existed: raw engine writes of the old payload."""
    rng = np.random.default_rng(3)
    old = [c for doc in CORPUS for c in make_chunks(rng, *doc)]
    # Keys are derived chunk by chunk, so chunks of one document with different ACLs keep them apart.
    mixed = make_chunks(rng, "mixed", "acme", ["user:alice"], 2)
    mixed[1].payload["acl"] = ["user:dave"]
    old += mixed
    if kind == "edge":
        from qdrant_edge import Distance as EdgeDistance
        from qdrant_edge import EdgeConfig, EdgeShard, EdgeVectorParams, Point, UpdateOperation

        EdgeChunkStore(tmp_path / "shard", DIM).close()
        config = EdgeConfig(vectors={"dense": EdgeVectorParams(size=DIM, distance=EdgeDistance.Cosine)})
        shard = EdgeShard.load(str(tmp_path / "shard"), config)
        shard.update(
            UpdateOperation.upsert_points([Point(c.point_id, {"dense": c.vector}, c.payload) for c in old])
        )
        shard.flush()
        shard.close()
        return EdgeChunkStore(tmp_path / "shard", DIM)
    client = QdrantClient(":memory:")
    QdrantServerChunkStore(client, "chunks", DIM)
    client.upsert(
        "chunks",
        points=[
            models.PointStruct(id=c.point_id, vector={"dense": c.vector}, payload=c.payload) for c in old
        ],
    )
    return QdrantServerChunkStore(client, "chunks", DIM)


@pytest.mark.parametrize("kind", ["edge", "qdrant"])
def test_chunks_stored_before_grants_get_them_when_the_store_opens(kind: str, tmp_path: Path) -> None:
    store = _store_without_grants(kind, tmp_path)
    try:
        alice = store.query([1.0] * DIM, "acme", ["user:alice"], limit=50)
        assert sorted((h.payload["document_id"], h.payload["chunk_index"]) for h in alice) == [
            ("alice-notes", 0),
            ("alice-notes", 1),
            ("alice-notes", 2),
            ("mixed", 0),
        ]
        assert [
            h.payload["chunk_index"] for h in store.query([1.0] * DIM, "acme", ["user:dave"], limit=50)
        ] == [1]
        found = store.query([1.0] * DIM, "acme", ["group:hr", "group:finance"], limit=50)
        assert {h.payload["document_id"] for h in found} == {"hr-handbook", "finance-q3"}
        # The other tenant's "everyone" still reads only its own documents.
        assert {
            h.payload["document_id"] for h in store.query([1.0] * DIM, "globex", ["everyone"], limit=50)
        } == {"globex-policy"}
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["edge", "qdrant"])
def test_chunks_stored_before_revisions_are_found_and_give_way_to_any_write(
    kind: str, tmp_path: Path
) -> None:
    # The same raw writes of the old payload: no grants, and no revision either.
    store = _store_without_grants(kind, tmp_path)
    try:
        assert store.stored_version("alice-notes") == StoredVersion("v1", "a1", 3, "", 0)
        newer = make_chunks(np.random.default_rng(9), "alice-notes", "acme", ["user:alice"], 2, "v2")
        assert store.replace_document("alice-notes", newer, 5) == 1
        assert store.stored_version("alice-notes") == StoredVersion("v2", "a1", 2, "", 5)
        revoked = store.update_access(
            "finance-q3", "acme", ["group:legal"], "internal", "a2", "v1:a2", revision=5, content_hash="v1"
        )
        assert revoked == 4
        assert store.query([1.0] * DIM, "acme", ["group:finance"], limit=50) == []
    finally:
        store.close()


def test_chunks_an_older_release_writes_meanwhile_give_way_to_any_write() -> None:
    # During a rolling upgrade, a replica of the previous release writes without a revision.
    client = QdrantClient(":memory:")
    store = QdrantServerChunkStore(client, "chunks", DIM)
    try:
        old = make_chunks(np.random.default_rng(10), "doc", "acme", ["user:bob"], 4)
        client.upsert(
            "chunks",
            points=[
                models.PointStruct(id=c.point_id, vector={"dense": c.vector}, payload=c.payload) for c in old
            ],
        )
        newer = make_chunks(np.random.default_rng(11), "doc", "acme", ["user:alice"], 2, "v2")
        assert store.replace_document("doc", newer, 3) == 2
        assert store.count() == 2
        assert version_of(store, "doc") == StoredVersion("v2", "a1", 2, "")
    finally:
        store.close()


def test_remote_store_carries_revisions_over_grpc(tmp_path: Path) -> None:
    with served_edge_store(tmp_path / "shard", DIM) as (_, _, remote):
        chunks = make_chunks(np.random.default_rng(12), "memo", "acme", ["user:bob"], 2)
        assert remote.replace_document("memo", chunks, 7) == 0
        assert (
            remote.update_access(
                "memo", "acme", ["user:alice"], "internal", "a2", "v1:a2", revision=9, content_hash="v1"
            )
            == 2
        )
        # An older access update, and one of other content, touch nothing: the caller writes in full.
        assert remote.update_access("memo", "acme", ["user:bob"], "internal", "a1", "v1:a1", revision=8) == 0
        assert (
            remote.update_access(
                "memo", "acme", ["user:bob"], "internal", "a1", "v0:a1", revision=10, content_hash="v0"
            )
            == 0
        )
        assert remote.stored_version("memo") == StoredVersion("v1", "a2", 2, "", 9)
        assert remote.delete_document("memo", 8) == 0
        assert remote.stored_version("memo") == StoredVersion("v1", "a2", 2, "", 9)
        assert remote.delete_document("memo", 11) == 2
        assert remote.stored_version("memo") == StoredVersion("", "", 0, "", 11)
        # A replace older than the delete removes itself; a newer one is the document again.
        assert remote.replace_document("memo", chunks, 10) == 2
        assert remote.count() == 0
        assert remote.replace_document("memo", chunks) == 0
        version = remote.stored_version("memo")
        assert version is not None and version.chunk_count == 2 and version.revision > 11


#: The purge tests' cutoff: tombstones of a lower revision go, those at it or above stay.
CUTOFF = 50
#: What each document reads as once the tombstones below ``CUTOFF`` are purged.
AFTER_PURGE = {
    "hr-handbook": StoredVersion("v1", "a1", 5, "", 10),
    "globex-policy": StoredVersion("v1", "a1", 4, "", 10),
    "reborn": StoredVersion("v1", "a1", 2, "", 40),
    "finance-q3": None,
    "alice-notes": None,
    "never-written": None,
    "board-minutes": StoredVersion("", "", 0, "", CUTOFF),
    "gone-lately": StoredVersion("", "", 0, "", 60),
}


def _tombstones_around_the_cutoff(store: ChunkStore) -> None:
    """Chunks written below ``CUTOFF``, three deletes below it (one of a document never written), two at or
    above it, and a document deleted below it and written again since, whose chunks replaced the tombstone."""
    rng = np.random.default_rng(21)
    for document_id, tenant, acl, n in CORPUS:
        assert store.replace_document(document_id, make_chunks(rng, document_id, tenant, acl, n), 10) == 0
    assert store.delete_document("finance-q3", 20) == 4
    assert store.delete_document("never-written", 30) == 0
    assert store.delete_document("alice-notes", CUTOFF - 1) == 3
    assert store.delete_document("board-minutes", CUTOFF) == 3
    assert store.delete_document("gone-lately", 60) == 0
    assert store.delete_document("reborn", 20) == 0
    assert store.replace_document("reborn", make_chunks(rng, "reborn", "acme", ["everyone"], 2), 40) == 0
    assert store.stored_version("finance-q3") == StoredVersion("", "", 0, "", 20)
    assert store.stored_version("never-written") == StoredVersion("", "", 0, "", 30)
    assert store.count() == 11


def _assert_purged_below_the_cutoff(store: ChunkStore) -> None:
    assert {document_id: store.stored_version(document_id) for document_id in AFTER_PURGE} == AFTER_PURGE
    assert store.count() == 11
    assert store.purge_tombstones(CUTOFF) == 0


def test_adapters_purge_the_same_tombstones_below_the_cutoff(tmp_path: Path) -> None:
    with edge_and_qdrant(tmp_path) as (edge, server):
        for s in (edge, server):
            _tombstones_around_the_cutoff(s)
            assert s.purge_tombstones(CUTOFF) == 3
            _assert_purged_below_the_cutoff(s)
        hits = [s.query([1.0] * DIM, "acme", ["everyone", "group:hr"], limit=50) for s in (edge, server)]
        assert [h.point_id for h in hits[0]] == [h.point_id for h in hits[1]]
        assert len(hits[0]) == 7


def test_remote_store_purges_tombstones_over_grpc(tmp_path: Path) -> None:
    with served_edge_store(tmp_path / "shard", DIM) as (edge, _, remote):
        _tombstones_around_the_cutoff(remote)
        assert remote.purge_tombstones(0) == 0
        assert remote.purge_tombstones(CUTOFF) == 3
        _assert_purged_below_the_cutoff(remote)
        assert {document_id: edge.stored_version(document_id) for document_id in AFTER_PURGE} == AFTER_PURGE
