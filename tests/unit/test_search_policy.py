from __future__ import annotations

import pytest
from pydantic import ValidationError

from copilot.auth import Principal
from services.retrieval.search import Hit, cap_per_document, held_entries
from services.retrieval.settings import RetrievalSettings


def principal(*roles: str, groups: tuple[str, ...] = ()) -> Principal:
    return Principal(subject="s", username="dana", tenant="acme", groups=groups, roles=frozenset(roles))


def chunks(*document_ids: str) -> list[Hit]:
    """Best first, as fusion ranks them; the id records each hit's rank."""
    return [
        Hit(f"{rank}", doc, doc, doc, "", 1.0 - rank / 100, (), 0, 0, 0, "everyone")
        for rank, doc in enumerate(document_ids)
    ]


def ranks(kept: list[Hit]) -> list[int]:
    return [int(h.chunk_id) for h in kept]


def test_without_role_groups_the_caller_holds_their_own_entries() -> None:
    caller = principal("copilot-user", groups=("legal",))

    assert held_entries(caller, {}) == caller.acl_principals() == ["everyone", "group:legal", "user:dana"]


def test_a_mapped_role_adds_its_groups_once() -> None:
    caller = principal("auditor", "copilot-user", groups=("legal",))
    role_groups = {"auditor": ["finance", "legal"], "reviewer": ["hr"]}

    assert held_entries(caller, role_groups) == ["everyone", "group:finance", "group:legal", "user:dana"]


@pytest.mark.parametrize("role", ["copilot-admin", "admin", "realm-admin", "finance"])
def test_unmapped_roles_grant_nothing_not_even_admin(role: str) -> None:
    # The store has no "any ACL" query, so an admin role must not be a way around document ACLs.
    caller = principal(role)

    assert held_entries(caller, {"auditor": ["finance"]}) == ["everyone", "user:dana"]


def test_a_role_mapped_to_no_groups_grants_nothing() -> None:
    assert held_entries(principal("copilot-admin"), {"copilot-admin": []}) == ["everyone", "user:dana"]


def test_settings_default_to_no_role_mapping_and_three_chunks_per_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COPILOT_RETRIEVAL_ROLE_GROUPS", raising=False)
    monkeypatch.delenv("COPILOT_RETRIEVAL_MAX_CHUNKS_PER_DOCUMENT", raising=False)

    settings = RetrievalSettings()

    assert settings.role_groups == {}
    assert settings.max_chunks_per_document == 1


def test_operators_set_role_groups_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPILOT_RETRIEVAL_ROLE_GROUPS", '{"auditor": ["finance", "legal"]}')

    assert RetrievalSettings().role_groups == {"auditor": ["finance", "legal"]}


def test_a_negative_cap_is_rejected() -> None:
    with pytest.raises(ValidationError):
        RetrievalSettings(max_chunks_per_document=-1)


def test_cap_keeps_the_best_chunks_of_each_document_and_fills_with_the_next() -> None:
    found = chunks("a", "a", "b", "a", "a", "c", "a", "b", "d")

    assert ranks(cap_per_document(found, 2, 5)) == [0, 1, 2, 5, 7]


def test_cap_stops_at_the_limit() -> None:
    assert ranks(cap_per_document(chunks("a", "b", "c", "d"), 3, 2)) == [0, 1]


def test_cap_returns_fewer_when_the_candidates_run_out() -> None:
    assert ranks(cap_per_document(chunks("a", "a", "a", "a", "b"), 1, 5)) == [0, 4]


def test_cap_zero_keeps_every_chunk() -> None:
    assert ranks(cap_per_document(chunks("a", "a", "a", "a", "b"), 0, 4)) == [0, 1, 2, 3]


def test_cap_of_nothing_is_nothing() -> None:
    assert cap_per_document([], 3, 5) == []
