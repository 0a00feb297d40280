"""query_database: Text2SQL over the operator's read-only SQL database.

The model is shown the tables most relevant to the question and the operator's closest worked examples,
writes one SELECT as constrained JSON, and the statement runs only after ``checked_select`` passes it,
on a read-only connection, with a time limit and a row limit.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy
import yaml
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from copilot.auth import Principal
from copilot.common.v1 import common_pb2
from copilot.embedding import Embedder
from services.generation.engine import ChatMessage, GenerationParams
from services.generation.tools import ToolCall, ToolError, ToolResult
from services.generation.tools.sql_guard import DIALECTS, checked_select

# How often (in SQLite virtual-machine steps) the time limit is checked.
_PROGRESS_STEPS = 1000
_SQL_SCHEMA = json.dumps(
    {"type": "object", "properties": {"sql": {"type": "string"}}, "required": ["sql"]}
)
_SQL_MAX_TOKENS = 256


# A text column with at most this many distinct values has them listed in the schema the model sees:
# it cannot guess whether a status is 'shipped' or 'SHIPPED'.
_MAX_LISTED_VALUES = 10


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    # "table(column)" this column refers to, if it is a foreign key.
    references: str = ""
    values: tuple[str, ...] = ()

    def ddl(self) -> str:
        text = f"{self.name} {self.type}"
        if self.references:
            text += f" REFERENCES {self.references}"
        if self.values:
            text += f" /* one of: {', '.join(repr(v) for v in self.values)} */"
        return text


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]

    def ddl(self) -> str:
        return f"CREATE TABLE {self.name} ({', '.join(c.ddl() for c in self.columns)});"

    def linked(self) -> set[str]:
        return {c.references.split("(")[0] for c in self.columns if c.references}


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    # More rows matched than were fetched.
    truncated: bool

    def table(self) -> str:
        lines = [" | ".join(self.columns)]
        lines += [" | ".join("NULL" if v is None else str(v) for v in row) for row in self.rows]
        if self.truncated:
            lines.append(f"(only the first {len(self.rows)} rows)")
        return "\n".join(lines)


@dataclass(frozen=True)
class Example:
    question: str
    sql: str


class ReadOnlyDatabase:
    """SQLite opened read-only (``mode=ro``), or PostgreSQL with every query in a read-only transaction."""

    def __init__(self, url: str, statement_timeout_s: float, max_rows: int) -> None:
        parsed = sqlalchemy.make_url(url)
        backend = parsed.get_backend_name()
        if backend not in DIALECTS:
            raise ValueError(f"unsupported database {backend!r}; use sqlite or postgresql")
        self.dialect = DIALECTS[backend]
        self.display_url = parsed.render_as_string(hide_password=True)
        self._timeout_s = statement_timeout_s
        self._max_rows = max_rows
        if backend == "sqlite":
            path = Path(parsed.database or "")
            if not path.is_file():
                raise ValueError(f"database file {path} does not exist")
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"

            def connect() -> sqlite3.Connection:
                connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
                # Belt and braces: mode=ro already refuses writes to the file.
                connection.execute("PRAGMA query_only = ON")
                return connection

            self._engine = sqlalchemy.create_engine("sqlite://", creator=connect, poolclass=NullPool)
        else:
            self._engine = sqlalchemy.create_engine(parsed, pool_pre_ping=True)
        self.tables = self._reflect()

    def _reflect(self) -> list[Table]:
        inspector = sqlalchemy.inspect(self._engine)
        tables = []
        for name in inspector.get_table_names():
            references = {
                column: f"{fk['referred_table']}({referred})"
                for fk in inspector.get_foreign_keys(name)
                for column, referred in zip(fk["constrained_columns"], fk["referred_columns"], strict=False)
            }
            columns = tuple(
                Column(
                    c["name"],
                    str(c["type"]),
                    references.get(c["name"], ""),
                    self._few_values(name, c["name"]) if _is_text(c["type"]) else (),
                )
                for c in inspector.get_columns(name)
            )
            tables.append(Table(name, columns))
        if not tables:
            raise ValueError(f"database {self.display_url} has no tables")
        return tables

    def _few_values(self, table: str, column: str) -> tuple[str, ...]:
        try:
            result = self.run(
                f'SELECT DISTINCT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL '
                f"LIMIT {_MAX_LISTED_VALUES + 1}"
            )
        except ToolError:
            return ()  # a slow or odd column is shown without its values
        if result.truncated or len(result.rows) > _MAX_LISTED_VALUES:
            return ()
        return tuple(sorted(str(row[0]) for row in result.rows))

    def run(self, sql: str) -> QueryResult:
        """Runs ``sql`` after ``checked_select`` passes it; slow or failing queries raise ``ToolError``."""
        statement = checked_select(sql, self.dialect)
        try:
            with self._engine.connect() as connection, self._limits(connection):
                result = connection.exec_driver_sql(statement)
                rows = [tuple(r) for r in result.fetchmany(self._max_rows + 1)]
                columns = list(result.keys())
                result.close()
        except sqlalchemy.exc.DBAPIError as error:
            if _interrupted(error):
                raise ToolError(
                    f"the query took longer than {self._timeout_s:g} s and was stopped; ask for less"
                ) from error
            raise ToolError(f"the database refused the query: {_first_line(error.orig)}") from error
        return QueryResult(columns, rows[: self._max_rows], len(rows) > self._max_rows)

    @contextmanager
    def _limits(self, connection: Connection) -> Iterator[None]:
        if self.dialect == "sqlite":
            raw = connection.connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            deadline = time.monotonic() + self._timeout_s
            # A non-zero return interrupts the statement ("interrupted").
            raw.set_progress_handler(lambda: int(time.monotonic() > deadline), _PROGRESS_STEPS)
            try:
                yield
            finally:
                raw.set_progress_handler(None, 0)
        else:
            with connection.begin() as transaction:
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                connection.exec_driver_sql(
                    f"SET LOCAL statement_timeout = {max(1, int(self._timeout_s * 1000))}"
                )
                try:
                    yield
                finally:
                    transaction.rollback()

    def close(self) -> None:
        self._engine.dispose()


def _is_text(column_type: Any) -> bool:
    return isinstance(column_type, sqlalchemy.types.String)


def _interrupted(error: sqlalchemy.exc.DBAPIError) -> bool:
    # SQLite says "interrupted"; PostgreSQL's statement_timeout is SQLSTATE 57014 (query_canceled).
    return "interrupted" in str(error.orig) or getattr(error.orig, "sqlstate", None) == "57014"


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_examples(path: Path, dialect: str) -> list[Example]:
    """The operator's question -> SQL pairs; each must pass the same check as the model's SQL."""
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a list of {{question, sql}} entries")
    examples = []
    for n, entry in enumerate(raw, 1):
        if not isinstance(entry, dict) or not entry.get("question") or not entry.get("sql"):
            raise ValueError(f"{path}: entry {n} needs a question and an sql")
        try:
            checked_select(str(entry["sql"]), dialect)
        except ToolError as error:
            raise ValueError(f"{path}: entry {n}: {error}") from error
        examples.append(Example(str(entry["question"]).strip(), str(entry["sql"]).strip()))
    return examples


def most_similar(scores: Sequence[float], limit: int) -> list[int]:
    """Indexes of the ``limit`` highest scores, best first; ties keep their original order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: max(limit, 0)]


def pick_tables(tables: Sequence[Table], scores: Sequence[float], limit: int) -> list[Table]:
    """Up to ``limit`` tables, most similar to the question first, each followed by the tables it refers
    to: a join needs both sides more than the model needs a less related table."""
    by_name = {t.name: t for t in tables}
    chosen: list[Table] = []
    for i in most_similar(scores, len(tables)):
        linked = [by_name[name] for name in sorted(tables[i].linked()) if name in by_name]
        for table in (tables[i], *linked):
            if len(chosen) < limit and table not in chosen:
                chosen.append(table)
    return chosen


def _cosines(vector: Sequence[float], others: Sequence[Sequence[float]]) -> list[float]:
    # The embedder's vectors are L2-normalised, so the dot product is the cosine.
    return [math.fsum(a * b for a, b in zip(vector, other, strict=True)) for other in others]


class QueryDatabase:
    name = "query_database"
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "question": {"type": "string", "description": "the question, in plain words (not SQL)"}
        },
        "required": ["question"],
    }

    def __init__(
        self,
        database: ReadOnlyDatabase,
        embedder: Embedder,
        readers: Sequence[str],
        tenant: str,
        description: str,
        examples: Sequence[Example] = (),
        schema_tables: int = 6,
        example_count: int = 3,
    ) -> None:
        self._database = database
        self._embedder = embedder
        self._readers = frozenset(readers)
        self._tenant = tenant
        self._examples = list(examples)
        self._schema_tables = schema_tables
        self._example_count = example_count
        self.example: tuple[str, dict[str, Any]] | None = (
            (examples[0].question, {"question": examples[0].question}) if examples else None
        )
        tables = ", ".join(t.name for t in database.tables)
        self.description = (
            f"Answers questions about {description or 'the data'} from the records in the database tables "
            f"{tables}, by writing and running a SQL query. Use it only for data held in those tables."
        )
        # Embedded once: a table is described by its name and its columns' names.
        self._table_vectors = embedder.embed(
            [f"{t.name}: {', '.join(c.name for c in t.columns)}" for t in database.tables]
        )
        self._example_vectors = embedder.embed([e.question for e in self._examples]) if examples else []

    def granting_entry(self, principal: Principal) -> str | None:
        """The caller's ACL entry that lets them query the database, most specific first; None for a
        caller of another tenant (or none), whose entries name other people."""
        if not principal.tenant or principal.tenant != self._tenant:
            return None
        held = principal.acl_principals()
        for prefix in ("user:", "group:", "everyone"):
            for entry in held:
                if entry.startswith(prefix) and entry in self._readers:
                    return entry
        return None

    def allowed(self, principal: Principal, audience: Sequence[common_pb2.Audience]) -> bool:
        """A reader asking, and every audience member a reader too: rows go into the answer they all see.
        (Audience entries are within the caller's tenant, checked above.)"""
        return self.granting_entry(principal) is not None and all(
            self._readers.intersection(member.acl_entries) for member in audience
        )

    def prompt(self, question: str) -> list[ChatMessage]:
        [vector] = self._embedder.embed([question])
        tables = pick_tables(
            self._database.tables, _cosines(vector, self._table_vectors), self._schema_tables
        )
        examples = [
            self._examples[i]
            for i in most_similar(_cosines(vector, self._example_vectors), self._example_count)
        ]
        dialect = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[self._database.dialect]
        schema = "\n".join(t.ddl() for t in tables)
        messages = [
            ChatMessage(
                "system",
                f"You write one {dialect} SELECT statement that answers the user's question from these "
                f"tables, using only their columns:\n\n{schema}\n\nReply with JSON: "
                '{"sql": "<the statement>"}.',
            )
        ]
        for example in examples:
            messages.append(ChatMessage("user", f"Question: {example.question}"))
            messages.append(ChatMessage("assistant", json.dumps({"sql": example.sql})))
        messages.append(ChatMessage("user", f"Question: {question}"))
        return messages

    def write_sql(self, call: ToolCall, question: str) -> str:
        params = GenerationParams(max_tokens=_SQL_MAX_TOKENS, temperature=0.0, json_schema=_SQL_SCHEMA)
        text = "".join(d.text for d in call.engine.stream_chat(self.prompt(question), params))
        try:
            sql = json.loads(text)["sql"]
        except (ValueError, KeyError, TypeError) as error:
            # The grammar makes this rare: only an answer cut off at the token limit gets here.
            raise ToolError(f"the model did not write a usable query: {text[:200]!r}") from error
        return str(sql).strip()

    def run(self, call: ToolCall, arguments: dict[str, Any]) -> ToolResult:
        entry = self.granting_entry(call.principal)
        if entry is None:  # never offered to such callers; a model cannot talk its way in either
            raise ToolError("the user may not query the database")
        if not self.allowed(call.principal, call.audience):
            raise ToolError("not everyone this answer is for may see the database")
        question = str(arguments.get("question", "")).strip()
        if not question:
            raise ToolError("query_database needs a non-empty question")
        sql = self.write_sql(call, question)
        try:
            result = self._database.run(sql)
        except ToolError as error:
            raise ToolError(f"{error} (SQL: {sql})") from error
        table = result.table()
        source = common_pb2.Passage(
            chunk_id="sql:" + hashlib.sha256(sql.encode()).hexdigest()[:16],
            document_id="database",
            title=f"Database query: {question}",
            uri=self._database.display_url,
            text=f"SQL: {sql}\nResult:\n{table}",
            score=1.0,
            access_reason=entry,
        )
        rows = f"{len(result.rows)}{'+' if result.truncated else ''} row(s)"
        return ToolResult(f"{rows} from: {sql}", f"SQL: {sql}\nResult ({rows}):\n{table}", [source])
