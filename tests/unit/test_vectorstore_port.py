import uuid

from copilot.vectorstore import point_id_for
from copilot.vectorstore.port import (
    CHUNK_COUNT_FIELD,
    REVISION_FIELD,
    Settled,
    new_revision,
    settle,
    tombstone_id,
)


def test_point_id_is_deterministic_uuid() -> None:
    first = point_id_for("doc-1", 0)
    assert first == point_id_for("doc-1", 0)
    assert uuid.UUID(first).version == 5
    assert str(uuid.UUID(first)) == first


def test_point_ids_differ_across_documents_and_chunks() -> None:
    pairs = [(doc, index) for doc in ("a", "a:1", "1:a", "b", "") for index in range(12)]
    ids = {point_id_for(doc, index) for doc, index in pairs}
    assert len(ids) == len(pairs)


def test_point_id_is_stable_across_releases() -> None:
    # Changing the namespace or the name layout would orphan every stored point; pin one value.
    assert point_id_for("handbook.pdf", 3) == "791bedc8-69b9-5895-b780-f522e3284af6"


def test_a_tombstone_id_is_no_chunks() -> None:
    ids = {point_id_for(doc, index) for doc in ("a", "deleted", "b") for index in range(12)}
    assert tombstone_id("a") not in ids and tombstone_id("a") != tombstone_id("b")


def test_revisions_rise_above_what_was_read_and_stay_exact_as_doubles() -> None:
    now = new_revision()
    assert new_revision(now + 1000) == now + 1001
    assert now < 2**53 and float(now) == now


def test_settle_finds_what_lies_below_the_newest_revision() -> None:
    def chunk(revision: int | None, count: int | None = 2) -> tuple[bool, dict[str, object]]:
        payload: dict[str, object] = {} if revision is None else {REVISION_FIELD: revision}
        return True, payload if count is None else {**payload, CHUNK_COUNT_FIELD: count}

    tombstone = (False, {REVISION_FIELD: 7})
    # Two whole chunks at 5 over an older chunk and one stored before revisions existed.
    assert settle([chunk(5), chunk(3, 3), chunk(5), chunk(None, None)]) == Settled(5, 2, 2, 2, True)
    # A newer delete: its tombstone is the newest, every chunk lies below it.
    assert settle([chunk(5), tombstone, chunk(5)]) == Settled(7, 2, 2, 0, False)
    # Part of a version only; chunks without a count pass as whole.
    assert settle([chunk(5)]) == Settled(5, 0, 0, 1, False)
    assert settle([chunk(5, None)]) == Settled(5, 0, 0, 1, True)
    assert settle([]) == Settled(0, 0, 0, 0, False)
