"""Why a user may or may not read a document, for the user themselves and for auditors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from copilot.auth import Principal
from copilot.errors import InvalidInput, NotFound, PermissionDenied
from copilot.vectorstore.port import ChunkStore
from services.retrieval.search import held_entries

#: One message whether the document is missing, another tenant's or unreadable, so that no answer reveals
#: that a document exists.
HIDDEN = "no document you may read has this id"

_SPECIFICITY = ("user:", "group:", "everyone")


@dataclass(frozen=True)
class AccessExplanation:
    allowed: bool
    granted_by: tuple[str, ...]
    #: Empty unless the caller is an auditor: who else may read a document is not every reader's business.
    acl: tuple[str, ...]
    classification: str
    title: str
    uri: str
    #: True when explaining for another user, whose groups and roles only the identity provider knows.
    groups_unknown: bool


def _specificity(entry: str) -> tuple[int, str]:
    for rank, prefix in enumerate(_SPECIFICITY):
        if entry.startswith(prefix):
            return rank, entry
    return len(_SPECIFICITY), entry


class AccessExplainer:
    def __init__(
        self, store: ChunkStore, *, role_groups: Mapping[str, Sequence[str]], auditor_role: str
    ) -> None:
        self._store = store
        self._role_groups = role_groups
        self._auditor_role = auditor_role

    def explain(self, principal: Principal, document_id: str, username: str = "") -> AccessExplanation:
        """Explains ``principal``'s own access, or with the auditor role that of ``username``.

        Another user is known here by name only, so their access is computed from ``user:<name>`` and
        ``everyone`` alone: claiming their groups would mean trusting a directory this service never sees.
        """
        if not document_id:
            raise InvalidInput("document_id is empty")
        auditor = bool(self._auditor_role) and principal.has_role(self._auditor_role)
        other = bool(username) and username != principal.username
        if other and not auditor:
            raise PermissionDenied("only auditors may explain another user's access")
        held = {f"user:{username}", "everyone"} if other else set(held_entries(principal, self._role_groups))
        access = self._store.document_access(document_id)
        if access is None or not principal.tenant or access.tenant != principal.tenant:
            raise NotFound(HIDDEN)
        granted = held & set(access.acl)
        # A reader learns no more about a document they may not read than about one that does not exist.
        if not auditor and not granted:
            raise NotFound(HIDDEN)
        return AccessExplanation(
            allowed=bool(granted),
            granted_by=tuple(sorted(granted, key=_specificity)),
            acl=access.acl if auditor else (),
            classification=access.classification,
            title=access.title,
            uri=access.uri,
            groups_unknown=other,
        )
