"""search_documents: the knowledge base, searched with the caller's own token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from copilot.auth import Principal
from copilot.common.v1 import common_pb2
from copilot.errors import DependencyUnavailable
from services.generation.tools import ToolCall, ToolError, ToolResult

# The model decides its next step from a glimpse of each passage; the answer gets them whole.
GLIMPSE_CHARS = 300


class PassageSource(Protocol):
    def search(
        self,
        token: str,
        query: str,
        top_k: int,
        audience: Sequence[common_pb2.Audience] = (),
        uri_prefixes: Sequence[str] = (),
    ) -> list[common_pb2.Passage]: ...


class SearchDocuments:
    name = "search_documents"
    description = (
        "Searches the company's written documents: policies, rules and benefits, handbooks, procedures, "
        "runbooks, memos, budgets and contracts. Use it for how things work and what the rules are."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "what to look for, in a few words"}},
        "required": ["query"],
    }
    example: tuple[str, dict[str, Any]] | None = (
        "What does the travel policy say about hotels?",
        {"query": "travel policy hotel"},
    )

    def __init__(self, source: PassageSource, top_k: int, min_relevance: float) -> None:
        self._source = source
        self._top_k = top_k
        self._min_relevance = min_relevance

    def allowed(self, principal: Principal, audience: Sequence[common_pb2.Audience]) -> bool:
        # Retrieval applies the caller's rights and the audience's to every search.
        return True

    def run(self, call: ToolCall, arguments: dict[str, Any]) -> ToolResult:
        query = str(arguments.get("query", "")).strip()
        if not query:
            raise ToolError("search_documents needs a non-empty query")
        try:
            passages = self._source.search(
                call.principal.token, query, self._top_k, call.audience, call.uri_prefixes
            )
        except DependencyUnavailable as error:
            raise ToolError(f"document search is unavailable: {error}") from error
        relevant = [p for p in passages if p.score >= self._min_relevance]
        if not relevant:
            return ToolResult(
                "no document you may read matches",
                "No document the user may read matches this query.",
            )
        glimpses = "\n\n".join(
            f"- {p.title}: {' '.join(p.text.split())[:GLIMPSE_CHARS]}" for p in relevant
        )
        titles = ", ".join(dict.fromkeys(p.title for p in relevant))
        return ToolResult(
            f"{len(relevant)} passage(s) from {titles}",
            f"Found {len(relevant)} passage(s):\n\n{glimpses}",
            relevant,
        )
