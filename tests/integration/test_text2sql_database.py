"""The query_database tool's database side on the real sample SQLite file: read-only whatever the SQL,
time and row limits, schema reflection, the operator's examples, who may use it, and how a query the
model wrote becomes a cited source or an error the model can read.

``WritesSql`` stands in for the model where a test needs one exact query (a real model cannot be made
to write a chosen statement); everything else is real, MiniLM embeddings included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy
from pydantic import ValidationError

from copilot.auth import Principal
from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.embedding import MiniLmEmbedder
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.settings import AuthSettings
from sample.build_sales_db import EXAMPLES, build
from services.generation.agent import Agent
from services.generation.answerer import Answerer, AnswerPolicy
from services.generation.engine import ChatMessage, EngineCatalog, GenerationParams, TokenDelta
from services.generation.retrieval_client import GrpcPassageSource
from services.generation.settings import DatabaseSettings
from services.generation.tools import Toolbox, ToolCall, ToolError
from services.generation.tools.database import QueryDatabase, ReadOnlyDatabase, load_examples
from services.generation.tools.documents import SearchDocuments
from services.generation.tools.sql_guard import UnsafeSql
from tests.integration.generation_standins import (
    Events,
    RecordingRetrieval,
    serve_generation,
    serve_retrieval,
)

ALICE = Principal("sub-alice", "alice", "acme", groups=("finance",), token="alice-token")
BOB = Principal("sub-bob", "bob", "acme", groups=("engineering",), token="bob-token")
DESCRIPTION = "sales: customers, products and orders"


@pytest.fixture(scope="module")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("db") / "sales.db")


@pytest.fixture
def database(db_file: Path) -> Iterator[ReadOnlyDatabase]:
    db = ReadOnlyDatabase(f"sqlite:///{db_file}", statement_timeout_s=0.5, max_rows=5)
    yield db
    db.close()


@pytest.fixture(scope="module")
def embedder() -> MiniLmEmbedder:
    return MiniLmEmbedder()


@dataclass
class WritesSql:
    """Answers every prompt with the same {"sql": ...} object, as the constrained model would."""

    sql: str
    model_name: str = "writes-sql"
    context_tokens: int = 4096

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        assert params.json_schema is not None
        yield TokenDelta(json.dumps({"sql": self.sql}), 10, 10, True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_schema_is_read_with_foreign_keys_and_the_few_values_of_text_columns(
    database: ReadOnlyDatabase,
) -> None:
    tables = {t.name: t for t in database.tables}

    assert set(tables) == {"customers", "orders", "products"}
    orders = tables["orders"].ddl()
    assert "customer_id INTEGER REFERENCES customers(id)" in orders
    assert "status TEXT /* one of: 'cancelled', 'pending', 'shipped' */" in orders
    assert tables["orders"].linked() == {"customers", "products"}
    assert "name TEXT," in tables["customers"].ddl()  # 60 names are too many to list


def test_a_select_returns_rows_and_says_when_it_was_cut(database: ReadOnlyDatabase) -> None:
    one = database.run("SELECT COUNT(*) AS n FROM customers WHERE country = 'Germany'")
    many = database.run("SELECT id FROM orders ORDER BY id")

    assert (one.columns, one.rows, one.truncated) == (["n"], [(5,)], False)
    assert (many.rows, many.truncated) == ([(1,), (2,), (3,), (4,), (5,)], True)
    assert many.table().endswith("(only the first 5 rows)")


def test_nothing_the_check_refuses_reaches_the_database(database: ReadOnlyDatabase, db_file: Path) -> None:
    before = digest(db_file)
    for sql in ["DELETE FROM orders", "SELECT 1; DROP TABLE orders", "PRAGMA writable_schema = ON"]:
        with pytest.raises(UnsafeSql):
            database.run(sql)
    assert digest(db_file) == before


def test_the_connection_itself_is_read_only(database: ReadOnlyDatabase, db_file: Path) -> None:
    # As if a parser bug let a write through the check: the connection refuses it.
    before = digest(db_file)
    with (
        sqlalchemy.create_engine(
            "sqlite://",
            creator=database._engine.pool._creator,  # type: ignore[attr-defined]
        ).connect() as connection,
        pytest.raises(sqlalchemy.exc.OperationalError, match="readonly database"),
    ):
        connection.exec_driver_sql("DELETE FROM orders")
    assert digest(db_file) == before


def test_a_slow_query_is_stopped_at_the_time_limit(database: ReadOnlyDatabase) -> None:
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT MAX(x) FROM n"

    with pytest.raises(ToolError, match="took longer than 0.5 s"):
        database.run(endless)
    assert database.run("SELECT 1 AS one").rows == [(1,)]  # the connection is fine afterwards


def test_a_query_the_database_rejects_says_why(database: ReadOnlyDatabase) -> None:
    with pytest.raises(ToolError, match="the database refused the query: no such column: revenue"):
        database.run("SELECT revenue FROM orders")


def test_a_missing_file_or_an_unknown_database_is_a_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        ReadOnlyDatabase(f"sqlite:///{tmp_path / 'nope.db'}", 1, 5)
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        ReadOnlyDatabase("mysql://user@localhost/sales", 1, 5)
    assert not (tmp_path / "nope.db").exists()  # read-only mode never creates the file


def test_the_sample_examples_load_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    examples = load_examples(EXAMPLES, "sqlite")
    assert len(examples) == 8 and examples[0].question.startswith("How many customers")

    bad = tmp_path / "examples.yaml"
    bad.write_text(
        "- question: Remove cancelled orders\n  sql: DELETE FROM orders WHERE status = 'cancelled'\n"
    )
    with pytest.raises(ValueError, match="entry 1: only SELECT queries may run, not DELETE"):
        load_examples(bad, "sqlite")


def test_an_example_nested_too_deeply_to_check_is_an_operator_error_naming_it(tmp_path: Path) -> None:
    deep = tmp_path / "examples.yaml"
    deep.write_text(
        "- question: How many customers?\n  sql: SELECT COUNT(*) FROM customers\n"
        f"- question: Silly\n  sql: SELECT {'(' * 60}1{')' * 60}\n"
    )

    with pytest.raises(ValueError, match=r"examples.yaml: entry 2: the SQL is nested too deeply to check"):
        load_examples(deep, "sqlite")


def test_settings_with_a_database_must_say_who_may_query_it() -> None:
    with pytest.raises(ValidationError, match="database.readers must say who may query"):
        DatabaseSettings(url="sqlite:///sample/sales.db")
    with pytest.raises(ValidationError, match="database.tenant must name the tenant"):
        DatabaseSettings(url="sqlite:///sample/sales.db", readers=["group:finance"])
    assert DatabaseSettings(url="sqlite:///sample/sales.db", readers=["group:finance"], tenant="acme").readers


def test_only_readers_are_offered_the_tool(database: ReadOnlyDatabase, embedder: MiniLmEmbedder) -> None:
    tool = QueryDatabase(database, embedder, ["group:finance"], "acme", DESCRIPTION)
    toolbox = Toolbox([SearchDocuments(source=None, top_k=4, min_relevance=0.45), tool])  # type: ignore[arg-type]

    assert [t.name for t in toolbox.for_caller(ALICE)] == ["search_documents", "query_database"]
    assert [t.name for t in toolbox.for_caller(BOB)] == ["search_documents"]
    assert tool.granting_entry(ALICE) == "group:finance"
    # Even if a model named it anyway, the tool refuses someone who is not a reader.
    with pytest.raises(ToolError, match="may not query the database"):
        tool.run(ToolCall(BOB, (), WritesSql("SELECT 1")), {"question": "How many customers?"})


@pytest.mark.parametrize(
    "caller",
    [
        # Another tenant's group of the same name, and a caller with no tenant at all.
        Principal("sub-mallory", "mallory", "globex", groups=("finance",), token="t"),
        Principal("sub-svc", "svc", "", groups=("finance",), token="t"),
    ],
)
def test_a_reader_entry_of_another_tenant_grants_nothing(
    database: ReadOnlyDatabase, embedder: MiniLmEmbedder, caller: Principal
) -> None:
    tool = QueryDatabase(database, embedder, ["group:finance"], "acme", DESCRIPTION)
    assert tool.granting_entry(caller) is None and not tool.allowed(caller, ())
    with pytest.raises(ToolError, match="may not query the database"):
        tool.run(ToolCall(caller, (), WritesSql("SELECT 1")), {"question": "How many customers?"})


def test_rows_go_into_an_answer_only_if_everyone_it_is_for_may_query_the_database(
    database: ReadOnlyDatabase, embedder: MiniLmEmbedder
) -> None:
    tool = QueryDatabase(database, embedder, ["group:finance"], "acme", DESCRIPTION)
    toolbox = Toolbox([tool])
    bob = common_pb2.Audience(acl_entries=["everyone", "group:engineering", "user:bob"])
    finance = common_pb2.Audience(acl_entries=["everyone", "group:finance", "user:alice2"])

    assert [t.name for t in toolbox.for_caller(ALICE, [finance])] == ["query_database"]
    assert toolbox.for_caller(ALICE, [finance, bob]) == []
    with pytest.raises(ToolError, match="not everyone this answer is for may see the database"):
        tool.run(ToolCall(ALICE, [bob], WritesSql("SELECT 1")), {"question": "How many customers?"})


def test_the_prompt_holds_the_relevant_tables_and_the_closest_examples(
    database: ReadOnlyDatabase, embedder: MiniLmEmbedder
) -> None:
    examples = load_examples(EXAMPLES, "sqlite")
    narrow = QueryDatabase(
        database, embedder, ["everyone"], "acme", DESCRIPTION, examples, schema_tables=1, example_count=2
    )
    wide = QueryDatabase(
        database, embedder, ["everyone"], "acme", DESCRIPTION, examples, schema_tables=3, example_count=2
    )

    prompt = narrow.prompt("In which countries are our customers?")
    system = prompt[0].content
    assert "CREATE TABLE customers" in system and "CREATE TABLE orders" not in system
    assert [m.role for m in prompt[1:]] == ["user", "assistant", "user", "assistant", "user"]
    shown = [m.content for m in prompt[1:-1] if m.role == "user"]
    assert all("customers" in q for q in shown), shown  # the closest examples, not the lidar's price
    assert json.loads(prompt[2].content)["sql"] in {e.sql for e in examples}
    assert prompt[-1].content == "Question: In which countries are our customers?"
    # Orders come with the tables they refer to, since a join needs both.
    assert {"orders", "customers", "products"} <= {
        line.split()[2]
        for line in wide.prompt("total of orders").__getitem__(0).content.splitlines()
        if line.startswith("CREATE TABLE")
    }


def test_a_query_becomes_a_source_the_answer_can_cite(
    database: ReadOnlyDatabase, embedder: MiniLmEmbedder
) -> None:
    tool = QueryDatabase(database, embedder, ["group:finance"], "acme", DESCRIPTION)
    sql = "SELECT COUNT(*) AS customers FROM customers WHERE country = 'Germany'"

    result = tool.run(ToolCall(ALICE, (), WritesSql(sql)), {"question": "How many customers in Germany?"})

    assert result.summary == f"1 row(s) from: {sql}"
    (source,) = result.sources
    assert source.text == f"SQL: {sql}\nResult:\ncustomers\n5"
    assert (source.document_id, source.access_reason) == ("database", "group:finance")
    assert source.title == "Database query: How many customers in Germany?"
    assert source.uri.startswith("sqlite:///")


def test_a_bad_query_from_the_model_is_an_error_it_can_read(
    database: ReadOnlyDatabase, embedder: MiniLmEmbedder
) -> None:
    tool = QueryDatabase(database, embedder, ["group:finance"], "acme", DESCRIPTION)

    with pytest.raises(
        ToolError, match=r"only SELECT queries may run, not DELETE \(SQL: DELETE FROM orders\)"
    ):
        tool.run(ToolCall(ALICE, (), WritesSql("DELETE FROM orders")), {"question": "Clean up orders"})
    with pytest.raises(ToolError, match="needs a non-empty question"):
        tool.run(ToolCall(ALICE, (), WritesSql("SELECT 1")), {"question": " "})


def test_sql_nested_too_deeply_goes_back_to_the_model_as_an_error(
    database: ReadOnlyDatabase, embedder: MiniLmEmbedder
) -> None:
    tool = QueryDatabase(database, embedder, ["group:finance"], "acme", DESCRIPTION)
    sql = "SELECT " + "(" * 60 + "COUNT(*)" + ")" * 60 + " FROM customers"

    with pytest.raises(ToolError, match="the SQL is nested too deeply to check; use fewer nested"):
        tool.run(ToolCall(ALICE, (), WritesSql(sql)), {"question": "How many customers?"})


@dataclass
class DeepThenFlat:
    """Picks query_database, writes SQL nested 60 deep, then (once told why it failed) a plain query."""

    model_name: str = "deep-then-flat"
    context_tokens: int = 8192

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        return [len(t) // 4 for t in texts]

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        told = [m.content for m in messages if m.role == "user" and m.content.startswith("Result")]
        if params.json_schema and '"sql"' in params.json_schema:
            depth = 60 if "again" not in messages[-1].content else 0
            text = json.dumps({"sql": "SELECT " + "(" * depth + "COUNT(*)" + ")" * depth + " FROM customers"})
        elif params.json_schema:
            question = {0: "how many customers", 1: "how many customers, again"}.get(len(told))
            action = {"tool": "query_database", "arguments": {"question": question}}
            text = json.dumps(action if question else {"tool": "answer"})
        else:
            text = "We have 20 customers [1]."
        yield TokenDelta(text, 10, 10, True)


def test_over_grpc_a_too_deeply_nested_query_is_a_failed_tool_call_and_the_answer_goes_on(
    database: ReadOnlyDatabase, embedder: MiniLmEmbedder, issuer: DevIssuer, auth_settings: AuthSettings
) -> None:
    retrieval_server, retrieval_target = serve_retrieval(RecordingRetrieval(passages=[]))
    engine = DeepThenFlat()
    tool = QueryDatabase(database, embedder, ["group:finance"], "acme", DESCRIPTION)
    agent = Agent(Toolbox([tool]), max_steps=4)
    answerer = Answerer(
        GrpcPassageSource(retrieval_target),
        EngineCatalog({engine.model_name: engine}, engine.model_name),
        Events(),
        AnswerPolicy(),
        b"test-key",
        agent=agent,
    )
    server = serve_generation(answerer, auth_settings)
    server.set_serving(True)
    try:
        stub = generation_pb2_grpc.GenerationServiceStub(open_channel(f"127.0.0.1:{server.port}"))
        responses = list(
            stub.Answer(
                generation_pb2.AnswerRequest(question="How many customers do we have?", use_tools=True),
                metadata=bearer(issuer.mint("alice")),
                timeout=60,
            )
        )
    finally:
        server.stop(1)
        retrieval_server.stop(0)

    calls = [r.tool_call for r in responses if r.HasField("tool_call")]
    assert [(c.name, c.failed) for c in calls] == [("query_database", True), ("query_database", False)]
    assert calls[0].result.startswith("the SQL is nested too deeply to check")
    assert responses[-1].HasField("final")
