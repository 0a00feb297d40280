"""Only one read-only SELECT gets through to the database.

The database connection is the real guarantee (SQLite opened read-only, PostgreSQL in a read-only
transaction, and the operator's role should have SELECT rights only); this check is the first line, and
turns a bad query into an error the model can read and correct. What runs is the statement as sqlglot
re-renders it from the tree it checked, so the database never sees text the check did not parse.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from services.generation.tools import ToolError

# Anything anywhere in the tree that writes, changes the session or reaches outside the database.
# (Names, not classes: sqlglot adds and renames expression types between versions.)
_FORBIDDEN_NODES = tuple(
    node
    for node in (
        getattr(exp, name, None)
        for name in (
            "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "AlterTable",
            "TruncateTable", "Command", "Pragma", "Set", "Transaction", "Commit", "Rollback",
            "Into", "Lock", "Copy", "Attach", "Detach", "Use", "Grant", "Revoke", "Analyze",
            "Cache", "Uncache", "LoadData", "Refresh", "Kill", "Summarize",
        )
    )
    if isinstance(node, type)
)  # fmt: skip

# Functions with side effects, or that read files or other servers, in SQLite and PostgreSQL.
_FORBIDDEN_FUNCTIONS = frozenset(
    {
        "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "lo_import", "lo_export",
        "lo_get", "lo_put", "lo_create", "lo_unlink", "dblink", "dblink_exec", "dblink_connect",
        "set_config", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
        "pg_rotate_logfile", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "nextval", "setval",
        "pg_advisory_lock", "pg_advisory_xact_lock", "pg_notify", "query_to_xml", "txid_current",
    }
)  # fmt: skip

# SQLAlchemy's dialect name -> sqlglot's.
DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres"}


class UnsafeSql(ToolError):
    pass


def checked_select(sql: str, dialect: str) -> str:
    """The one SELECT in ``sql``, re-rendered from its parse tree; ``UnsafeSql`` for anything else."""
    try:
        return _checked_select(sql, dialect)
    except RecursionError as error:
        # sqlglot parses and renders recursively: some 50 nested parentheses or 80 nested subqueries
        # exhaust Python's stack. Such a query is refused like any other the check cannot read.
        raise UnsafeSql(
            "the SQL is nested too deeply to check; use fewer nested parentheses or subqueries"
        ) from error


def _checked_select(sql: str, dialect: str) -> str:
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as error:
        raise UnsafeSql(f"the SQL does not parse: {_first_line(error)}") from error
    if len(statements) != 1:
        raise UnsafeSql(f"expected exactly one SQL statement, got {len(statements)}")
    (statement,) = statements
    if not isinstance(statement, exp.Query):
        raise UnsafeSql(f"only SELECT queries may run, not {statement.key.upper()}")
    for node in statement.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            raise UnsafeSql(f"only read-only SELECT queries may run; found {node.key.upper()}")
        if isinstance(node, exp.Func) and _function_name(node) in _FORBIDDEN_FUNCTIONS:
            raise UnsafeSql(f"the function {_function_name(node)} may not be used")
    return statement.sql(dialect=dialect)


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
