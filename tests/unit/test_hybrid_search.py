from __future__ import annotations

import pytest

from copilot.vectorstore.port import (
    Condition,
    Narrowing,
    access_payload,
    grant_keys,
    query_conditions,
    uri_ancestors,
    with_grants,
)
from services.retrieval.search import Hit, merge_adjacent, reciprocal_rank_fusion


def test_rrf_rewards_items_both_rankings_hold() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "d", "a"]], [1.0, 1.0], k=60)

    # a: 1/61 + 1/63, c: 1/63 + 1/61 (tie, a seen first), b: 1/62, d: 1/62.
    assert fused == ["a", "c", "b", "d"]


def test_rrf_weights_scale_each_ranking() -> None:
    assert reciprocal_rank_fusion([["a"], ["b"]], [1.0, 2.0], k=1)[0] == "b"
    assert reciprocal_rank_fusion([["a"], ["b"]], [2.0, 1.0], k=1)[0] == "a"


def test_rrf_of_one_ranking_keeps_its_order() -> None:
    assert reciprocal_rank_fusion([["x", "y", "z"]], [1.0], k=60) == ["x", "y", "z"]


def hit(doc: str, index: int, start: int, end: int, score: float, text: str = "") -> Hit:
    return Hit(
        chunk_id=f"{doc}-{index}",
        document_id=doc,
        title=doc,
        uri=doc,
        text=text or f"<{index}>",
        score=score,
        heading_path=(),
        page=0,
        char_start=start,
        char_end=end,
        access_reason="everyone",
        chunk_index=index,
        last_chunk_index=index,
    )


def test_overlapping_neighbours_merge_without_repeating_the_overlap() -> None:
    document = "One. Two. Three. Four."
    first = hit("d", 0, 0, 9, 0.5, document[0:9])  # "One. Two."
    second = hit("d", 1, 5, 16, 0.8, document[5:16])  # "Two. Three."

    [merged] = merge_adjacent([second, first])

    assert merged.text == "One. Two. Three."
    assert (merged.char_start, merged.char_end) == (0, 16)
    assert merged.score == 0.8
    assert merged.chunk_id == "d-1"
    assert (merged.chunk_index, merged.last_chunk_index) == (0, 1)


def test_a_run_of_three_merges_whatever_order_they_ranked_in() -> None:
    hits = [
        hit("d", 2, 20, 30, 0.9),
        hit("x", 0, 0, 5, 0.85),
        hit("d", 0, 0, 10, 0.7),
        hit("d", 1, 10, 20, 0.6),
    ]

    merged = merge_adjacent(hits)

    assert [(h.document_id, h.chunk_index, h.last_chunk_index) for h in merged] == [("d", 0, 2), ("x", 0, 0)]
    assert merged[0].text == "<0><1><2>"


def test_non_neighbours_and_section_gaps_stay_apart() -> None:
    far = [hit("d", 0, 0, 10, 0.9), hit("d", 2, 20, 30, 0.8)]
    gap = [hit("d", 0, 0, 10, 0.9), hit("d", 1, 12, 20, 0.8)]
    other_doc = [hit("d", 0, 0, 10, 0.9), hit("e", 1, 10, 20, 0.8)]

    for hits in (far, gap, other_doc):
        assert merge_adjacent(hits) == hits


def test_identity_becomes_one_condition_on_tenant_qualified_grants() -> None:
    assert query_conditions("acme", ["group:hr", "everyone"], Narrowing()) == [
        Condition("grants", ('["acme","group:hr"]', '["acme","everyone"]')),
    ]


def test_grant_keys_cannot_be_confused_across_tenants() -> None:
    # A "/"-joined key would make tenant "a/user:bob" + "everyone" equal tenant "a" + user "bob/everyone".
    assert set(grant_keys("a/user:bob", ["everyone"])).isdisjoint(grant_keys("a", ["user:bob/everyone"]))
    assert grant_keys('ac"me', ["group:x"]) == ['["ac\\"me","group:x"]']


def test_stored_grants_follow_the_payload_tenant_and_acl() -> None:
    stored = with_grants({"tenant": "acme", "acl": ["user:bob"], "grants": ['["other","everyone"]']})
    assert stored["grants"] == ['["acme","user:bob"]']
    assert access_payload("acme", ["group:hr"], "internal", "h", "f")["grants"] == ['["acme","group:hr"]']


@pytest.mark.parametrize(
    ("tenant", "principals", "narrow"),
    [
        ("", ["everyone"], Narrowing()),
        ("acme", [], Narrowing()),
        ("acme", ["everyone"], Narrowing(audience=(("user:bob",), ()))),
    ],
)
def test_missing_identity_matches_nothing(tenant: str, principals: list[str], narrow: Narrowing) -> None:
    assert query_conditions(tenant, principals, narrow) is None


def test_each_audience_member_and_filter_adds_a_must_condition() -> None:
    narrow = Narrowing(
        audience=(("user:bob", "group:eng"), ("user:carol",)),
        uri_prefixes=("/docs/hr/",),
        document_types=(".PDF",),
        modified_after=10.0,
    )

    assert query_conditions("acme", ["user:alice"], narrow) == [
        Condition("grants", ('["acme","user:alice"]',)),
        Condition("acl", ("user:bob", "group:eng")),
        Condition("acl", ("user:carol",)),
        Condition("uri_ancestors", ("/docs/hr",)),
        Condition("doc_type", ("pdf",)),
        Condition("modified_at", at_least=10.0, below=None),
    ]


def test_uri_ancestors_stop_at_segment_boundaries() -> None:
    assert uri_ancestors("/docs/hr/policy.md") == ["/", "/docs", "/docs/hr", "/docs/hr/policy.md"]
    assert uri_ancestors("https://wiki.acme.com/hr/leave") == [
        "https://",
        "https://wiki.acme.com",
        "https://wiki.acme.com/hr",
        "https://wiki.acme.com/hr/leave",
    ]
    assert uri_ancestors("notes.txt") == ["notes.txt"]


def test_merged_passages_stop_growing_at_the_chunk_limit() -> None:
    run = [hit("d", i, i * 10, i * 10 + 10, 0.9 - i / 100) for i in range(5)]

    merged = merge_adjacent(run, max_chunks=3)

    assert [(h.chunk_index, h.last_chunk_index) for h in merged] == [(0, 2), (3, 4)]
