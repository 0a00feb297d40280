"""The agent loop's rules, driven by ``Scripted``: a stand-in for the model that replies with the actions
a test lists (the real model's choices are exercised in test_answerer.py and test_generation_grpc.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from copilot.auth import Principal
from copilot.common.v1 import common_pb2
from services.generation.agent import ACTION_MAX_TOKENS, Agent, Findings, ToolUse, action_schema
from services.generation.engine import ChatMessage, GenerationParams, TokenDelta
from services.generation.prompt import prompt_tokens
from services.generation.tools import Toolbox, ToolCall, ToolError, ToolResult
from services.generation.tools.database import Column, QueryResult, Table, most_similar, pick_tables

ALICE = Principal("sub-alice", "alice", "acme", groups=("finance",), token="alice-token")


@dataclass
class Scripted:
    replies: list[str]
    context_tokens: int = 4096
    model_name: str = "scripted"
    prompts: list[list[ChatMessage]] = field(default_factory=list)
    schemas: list[str | None] = field(default_factory=list)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        self.prompts.append(list(messages))
        self.schemas.append(params.json_schema)
        yield TokenDelta(self.replies.pop(0), 1, 1, True)


@dataclass
class Lookup:
    """A tool that finds one passage per query, or fails for the query "fail"."""

    name: str = "lookup"
    description: str = "Looks things up."
    parameters: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        }
    )
    example: tuple[str, dict[str, Any]] | None = ("Where is the office?", {"query": "office address"})
    queries: list[str] = field(default_factory=list)

    def allowed(self, principal: Principal, audience: Sequence[common_pb2.Audience]) -> bool:
        return True

    def run(self, call: ToolCall, arguments: dict[str, Any]) -> ToolResult:
        self.queries.append(arguments["query"])
        if arguments["query"] == "fail":
            raise ToolError("the index is offline")
        passage = common_pb2.Passage(chunk_id=f"p-{arguments['query']}", text=f"about {arguments['query']}")
        return ToolResult(f"found {arguments['query']}", f"text about {arguments['query']}", [passage])


def call(tool: str = "lookup", **arguments: str) -> str:
    return json.dumps({"tool": tool, "arguments": arguments})


ANSWER = json.dumps({"tool": "answer"})


def run(agent: Agent, engine: Scripted) -> tuple[list[ToolUse], Findings]:
    uses: list[ToolUse] = []
    steps = agent.run(ToolCall(ALICE, (), engine), "What do we know?")
    while True:
        try:
            uses.append(next(steps))
        except StopIteration as done:
            return uses, done.value


def test_calls_until_the_model_answers_and_returns_what_was_found() -> None:
    tool, engine = Lookup(), Scripted([call(query="a"), call(query="b"), ANSWER])

    uses, findings = run(Agent(Toolbox([tool]), max_steps=5), engine)

    assert [(u.name, u.arguments, u.result, u.failed) for u in uses] == [
        ("lookup", '{"query": "a"}', "found a", False),
        ("lookup", '{"query": "b"}', "found b", False),
    ]
    assert [p.chunk_id for p in findings.sources] == ["p-a", "p-b"]
    assert findings.errors == []
    # The model saw each result before its next step.
    assert engine.prompts[2][-1].content == "Result of lookup:\ntext about b"


def test_the_first_step_must_call_a_tool_and_later_ones_may_answer() -> None:
    engine = Scripted([call(query="a"), ANSWER])

    run(Agent(Toolbox([Lookup()]), max_steps=5), engine)

    first, second = (json.loads(s or "") for s in engine.schemas)
    assert [c["properties"]["tool"]["const"] for c in first["anyOf"]] == ["lookup"]
    assert [c["properties"]["tool"]["const"] for c in second["anyOf"]] == ["lookup", "answer"]


def test_the_step_limit_ends_the_loop() -> None:
    tool, engine = Lookup(), Scripted([call(query=str(n)) for n in range(10)])

    uses, findings = run(Agent(Toolbox([tool]), max_steps=3), engine)

    assert tool.queries == ["0", "1", "2"]
    assert len(uses) == len(findings.sources) == 3


def test_the_same_call_twice_ends_the_loop_without_running_it_again() -> None:
    tool, engine = Lookup(), Scripted([call(query="a"), call(query="a"), call(query="b")])

    run(Agent(Toolbox([tool]), max_steps=5), engine)

    assert tool.queries == ["a"]


def test_a_failing_tool_is_reported_and_the_model_sees_the_error() -> None:
    engine = Scripted([call(query="fail"), call(query="ok"), ANSWER])

    uses, findings = run(Agent(Toolbox([Lookup()]), max_steps=5), engine)

    assert [(u.result, u.failed) for u in uses] == [("the index is offline", True), ("found ok", False)]
    assert findings.errors == ["lookup: the index is offline"]
    assert engine.prompts[1][-1].content == "Result: lookup failed: the index is offline"


def test_an_unknown_tool_or_a_broken_reply_goes_back_to_the_model() -> None:
    # Without a grammar (or cut off at the token limit) a model can write anything.
    engine = Scripted([call("delete_everything", query="x"), '{"tool": "lookup", "argum', ANSWER])

    uses, findings = run(Agent(Toolbox([Lookup()]), max_steps=5), engine)

    assert uses[0].failed and "there is no tool 'delete_everything'; use one of lookup" in uses[0].result
    assert findings.errors[1].startswith("the reply is not one JSON object")
    assert engine.prompts[2][-1].content.startswith("Error: the reply is not one JSON object")


def test_a_reply_nested_deeper_than_the_json_decoder_goes_back_to_the_model() -> None:
    engine = Scripted(["[" * 5000 + "]" * 5000, call(query="ok"), ANSWER])

    uses, findings = run(Agent(Toolbox([Lookup()]), max_steps=5), engine)

    assert [(u.result, u.failed) for u in uses] == [("found ok", False)]
    assert findings.errors[0].startswith("the reply is not one JSON object: '[[[")
    assert engine.prompts[1][-1].content.startswith("Error: the reply is not one JSON object")


def test_a_full_context_ends_the_loop_with_what_was_found() -> None:
    probe = Scripted([call(query="a"), ANSWER])
    run(Agent(Toolbox([Lookup()]), max_steps=5), probe)
    first_prompt = prompt_tokens(
        [{"role": m.role, "content": m.content} for m in probe.prompts[0]], probe.count_tokens_many
    )
    # Room for the first step and its reply, not for the second step's longer prompt.
    engine = Scripted([call(query="a"), call(query="b")], context_tokens=first_prompt + ACTION_MAX_TOKENS)

    uses, findings = run(Agent(Toolbox([Lookup()]), max_steps=5), engine)

    assert len(engine.prompts) == len(uses) == 1
    assert [p.chunk_id for p in findings.sources] == ["p-a"]


def test_each_tools_example_is_shown_as_a_worked_call() -> None:
    engine = Scripted([call(query="a"), ANSWER])

    run(Agent(Toolbox([Lookup()]), max_steps=5), engine)

    prompt = engine.prompts[0]
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
    assert json.loads(prompt[2].content) == {"tool": "lookup", "arguments": {"query": "office address"}}
    assert "- lookup: Looks things up." in prompt[0].content


def test_action_schema_allows_only_the_given_tools() -> None:
    schema = json.loads(action_schema([Lookup()], may_answer=False))

    (choice,) = schema["anyOf"]
    assert choice["required"] == ["tool", "arguments"] and choice["additionalProperties"] is False


def test_most_similar_and_pick_tables_follow_foreign_keys_while_room_is_left() -> None:
    customers = Table("customers", (Column("id", "INTEGER"),))
    products = Table("products", (Column("id", "INTEGER"),))
    orders = Table(
        "orders",
        (Column("customer_id", "INTEGER", "customers(id)"), Column("product_id", "INTEGER", "products(id)")),
    )
    notes = Table("notes", (Column("text", "TEXT"),))
    tables = [customers, products, orders, notes]

    assert most_similar([0.1, 0.5, 0.5, 0.9], 3) == [3, 1, 2]
    # notes scores above customers and products, but orders refers to them.
    assert pick_tables(tables, [0.1, 0.1, 0.9, 0.5], 3) == [orders, customers, products]
    assert pick_tables(tables, [0.1, 0.1, 0.9, 0.5], 4) == [orders, customers, products, notes]
    assert pick_tables(tables, [0.1, 0.1, 0.9, 0.5], 1) == [orders]
    assert pick_tables(tables, [0.2, 0.1, 0.0, 0.5], 2) == [notes, customers]


def test_query_results_read_as_a_table() -> None:
    result = QueryResult(["country", "n"], [("Germany", 5), ("Japan", None)], truncated=True)

    assert result.table() == "country | n\nGermany | 5\nJapan | NULL\n(only the first 2 rows)"
