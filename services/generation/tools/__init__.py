"""Tools the agent may call before it answers, registered in one place: ``registry.build_toolbox``.

A tool gets the caller (and so their token and rights), the arguments the model wrote, and the engine
the answer is being written with; it returns a short summary for the user, an observation for the model
and the sources the final answer may cite. A ``ToolError`` goes back to the model as an observation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from copilot.auth import Principal
from copilot.common.v1 import common_pb2
from copilot.errors import CopilotError
from services.generation.engine import Engine


class ToolError(CopilotError):
    """The tool could not do what the model asked; the message tells the model (and the user) why."""


@dataclass(frozen=True)
class ToolCall:
    """Who the tool works for: their token and rights apply to whatever it reads."""

    principal: Principal
    audience: Sequence[common_pb2.Audience]
    engine: Engine
    # Documents the caller limited the answer to, by uri prefix; empty means all they may read.
    uri_prefixes: Sequence[str] = ()


@dataclass(frozen=True)
class ToolResult:
    # One line for the user.
    summary: str
    # What the model reads before its next step.
    observation: str
    # What the final answer may cite.
    sources: list[common_pb2.Passage] = field(default_factory=list)


class Tool(Protocol):
    name: str
    # For the model: what the tool knows and when to use it.
    description: str
    # JSON schema of the arguments object the model writes.
    parameters: dict[str, Any]
    # A question this tool is right for, with the arguments to call it with: small models pick tools
    # far better from a demonstration than from a description.
    example: tuple[str, dict[str, Any]] | None

    def allowed(self, principal: Principal, audience: Sequence[common_pb2.Audience]) -> bool:
        """Whether the tool may work for ``principal`` on an answer ``audience`` will see too."""
        ...

    def run(self, call: ToolCall, arguments: dict[str, Any]) -> ToolResult: ...


class Toolbox:
    def __init__(self, tools: Sequence[Tool]) -> None:
        names = [t.name for t in tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique: {names}")
        self._tools = list(tools)

    def for_caller(self, principal: Principal, audience: Sequence[common_pb2.Audience] = ()) -> list[Tool]:
        """The tools this caller may use for this audience; the others are never shown to the model."""
        return [t for t in self._tools if t.allowed(principal, audience)]
