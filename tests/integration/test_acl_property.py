"""Property: Qdrant's engine, filtered by a caller's ACL entries, returns exactly a brute-force top-k of
what that caller may read, and never a chunk of another tenant or outside their entries."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from copilot.auth import Principal
from copilot.embedding import MiniLmEmbedder
from copilot.lexical import encode_document
from copilot.vectorstore.edge import EdgeChunkStore
from copilot.vectorstore.port import Narrowing, StoredChunk, point_id_for
from services.retrieval.search import Mode, Searcher, SearchOptions, held_entries

DIMENSION = 16
TENANTS = ["acme", "globex", "initech"]
# Users and groups share names so that "user:finance" granting "group:finance" (or back) would show up.
NAMES = ["alice", "bob", "carol", "dave", "erin", "finance", "legal", "engineering"]
ROLES = ["copilot-user", "copilot-admin", "copilot-ingest", "auditor"]
ROLE_GROUPS = {"auditor": ["finance", "legal"]}
# Written here rather than derived from ROLE_GROUPS so that held_entries is checked, not reused.
AUDITOR_ENTRIES = {"group:finance", "group:legal"}
TOLERANCE = 1e-4
EXAMPLES = 10_000


@dataclass(frozen=True)
class Corpus:
    store: EdgeChunkStore
    ids: list[str]
    tenants: np.ndarray  # one tenant name per chunk
    acls: list[frozenset[str]]
    unit_vectors: np.ndarray  # rows normalised, so cosine is a dot product


def _random_acl(rng: np.random.Generator) -> list[str]:
    kind = rng.random()
    if kind < 0.1:
        return []  # unreadable: ingestion refuses these, but the engine must still hide them
    entries = [f"user:{n}" for n in NAMES if rng.random() < 0.15]
    entries += [f"group:{n}" for n in NAMES if rng.random() < 0.15]
    if kind > 0.8:
        entries.append("everyone")
    return entries


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    rng = np.random.default_rng(20260)
    store = EdgeChunkStore(Path(tmp_path_factory.mktemp("acl-edge")), DIMENSION)
    ids: list[str] = []
    tenants: list[str] = []
    acls: list[frozenset[str]] = []
    vectors: list[np.ndarray] = []
    for doc in range(90):
        document_id = f"doc-{doc}"
        tenant = str(rng.choice(TENANTS))
        acl = _random_acl(rng)
        chunks = []
        for index in range(int(rng.integers(1, 7))):
            # Some chunks repeat an earlier vector (boilerplate pasted across documents), so ties occur.
            vector = vectors[int(rng.integers(len(vectors)))] if vectors and rng.random() < 0.1 else None
            vector = rng.standard_normal(DIMENSION) if vector is None else vector
            point_id = point_id_for(document_id, index)
            payload = {"document_id": document_id, "chunk_index": index, "tenant": tenant, "acl": acl}
            chunks.append(StoredChunk(point_id, vector.tolist(), payload))
            ids.append(point_id)
            tenants.append(tenant)
            acls.append(frozenset(acl))
            vectors.append(vector)
        store.replace_document(document_id, chunks)
    matrix = np.array(vectors)
    units = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    assert store.count() == len(ids) >= 250
    yield Corpus(store, ids, np.array(tenants), acls, units)
    store.close()


principals = st.builds(
    Principal,
    subject=st.just("sub"),
    username=st.sampled_from(NAMES),
    # The empty tenant is missing identity: it must see nothing.
    tenant=st.sampled_from([*TENANTS, "", "umbrella"]),
    groups=st.lists(st.sampled_from(NAMES), max_size=3, unique=True).map(tuple),
    roles=st.frozensets(st.sampled_from(ROLES), max_size=2),
)


def test_engine_returns_the_brute_force_top_k_of_readable_chunks(corpus: Corpus) -> None:
    cases = 0

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
    @given(principal=principals, seed=st.integers(0, 2**32 - 1), limit=st.integers(1, 40))
    def check(principal: Principal, seed: int, limit: int) -> None:
        nonlocal cases
        cases += 1
        allowed = set(principal.acl_principals())
        if "auditor" in principal.roles:
            allowed |= AUDITOR_ENTRIES
        held = held_entries(principal, ROLE_GROUPS)
        assert set(held) == allowed

        query = np.random.default_rng(seed).standard_normal(DIMENSION)
        hits = corpus.store.query(query.tolist(), principal.tenant, held, limit)

        for hit in hits:
            assert hit.payload["tenant"] == principal.tenant
            assert set(hit.payload["acl"]) & allowed

        readable = [
            i
            for i, (tenant, acl) in enumerate(zip(corpus.tenants, corpus.acls, strict=True))
            if tenant == principal.tenant and acl & allowed
        ]
        cosine = corpus.unit_vectors @ (query / np.linalg.norm(query))
        expected = sorted(readable, key=lambda i: -cosine[i])[:limit]
        assert len(hits) == len(expected)
        if not hits:
            return
        position = {point_id: i for i, point_id in enumerate(corpus.ids)}
        got = [position[h.point_id] for h in hits]
        assert len(set(got)) == len(got) and set(got) <= set(readable)
        for hit, i, reference in zip(hits, got, expected, strict=True):
            assert abs(hit.score - cosine[i]) <= TOLERANCE
            assert abs(hit.score - cosine[reference]) <= TOLERANCE
        # Ties at the cut-off may swap ids, but nothing readable and left out may score clearly higher.
        left_out = set(readable) - set(got)
        if left_out:
            assert max(cosine[i] for i in left_out) <= hits[-1].score + TOLERANCE

    check()
    assert cases >= EXAMPLES


WORDS = [
    "vacuum",
    "index",
    "backup",
    "replica",
    "budget",
    "travel",
    "leave",
    "contract",
    "salary",
    "merger",
    "audit",
    "incident",
]
HYBRID_EXAMPLES = 1_000


@pytest.fixture(scope="module")
def searcher_and_acls(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Searcher, dict[str, tuple[str, frozenset[str]]]]]:
    """Documents with text and BM25 vectors, searched through the Searcher in every ranking mode."""
    embedder = MiniLmEmbedder()
    rng = np.random.default_rng(4242)
    store = EdgeChunkStore(Path(tmp_path_factory.mktemp("hybrid-edge")), embedder.dimension)
    access: dict[str, tuple[str, frozenset[str]]] = {}
    for doc in range(60):
        document_id = f"doc-{doc}"
        tenant, acl = str(rng.choice(TENANTS)), _random_acl(rng)
        access[document_id] = (tenant, frozenset(acl))
        texts = [
            " ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(int(rng.integers(1, 5)))
        ]
        chunks = [
            StoredChunk(
                point_id_for(document_id, i),
                vector,
                {"document_id": document_id, "chunk_index": i, "tenant": tenant, "acl": acl, "text": text},
                encode_document(text),
            )
            for i, (text, vector) in enumerate(zip(texts, embedder.embed(texts), strict=True))
        ]
        store.replace_document(document_id, chunks)
    searcher = Searcher(store, embedder, 5, 50, 2000, role_groups=ROLE_GROUPS, max_chunks_per_document=2)
    yield searcher, access
    store.close()


entries = st.sampled_from(["everyone", *(f"user:{n}" for n in NAMES), *(f"group:{n}" for n in NAMES)])


def test_hybrid_search_with_an_audience_returns_only_what_everyone_present_may_read(
    searcher_and_acls: tuple[Searcher, dict[str, tuple[str, frozenset[str]]]],
) -> None:
    searcher, access = searcher_and_acls
    cases = 0

    @settings(max_examples=HYBRID_EXAMPLES, deadline=None, derandomize=True)
    @given(
        principal=principals,
        words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
        audience=st.lists(st.lists(entries, min_size=1, max_size=4, unique=True).map(tuple), max_size=3),
        mode=st.sampled_from(list(Mode)),
        top_k=st.integers(1, 20),
    )
    def check(
        principal: Principal, words: list[str], audience: list[tuple[str, ...]], mode: Mode, top_k: int
    ) -> None:
        nonlocal cases
        cases += 1
        held = set(held_entries(principal, ROLE_GROUPS))
        options = SearchOptions(top_k=top_k, mode=mode, narrow=Narrowing(audience=tuple(audience)))
        for hit in searcher.search(principal, " ".join(words), options):
            tenant, acl = access[hit.document_id]
            assert tenant == principal.tenant
            assert acl & held
            for member in audience:
                assert acl & set(member)

    check()
    assert cases >= HYBRID_EXAMPLES
