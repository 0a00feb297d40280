"""The monitor's tables as SQLAlchemy Core objects, matching the head of the Alembic migrations.

Migrations (``services/monitor/migrations/versions``) create and change the schema and are frozen in time;
this module describes the schema the code reads and writes, so the two change together. Times are integer
microseconds since the epoch: exact, and they sort in SQL without parsing on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Micros = sa.BigInteger
EMPTY_JSON_LIST = sa.text("'[]'")

metadata = sa.MetaData()

interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("interaction_id", sa.Text, nullable=False, unique=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("refused", sa.Boolean, nullable=False),
    sa.Column("occurred_at_us", Micros, nullable=False),
    sa.Column("recorded_at_us", Micros, nullable=False),
    sa.Column("event", sa.LargeBinary, nullable=False),
    # The caller cancelled mid-stream (InteractionEvent.interrupted): the answer is cut off.
    sa.Column("interrupted", sa.Boolean, nullable=False, server_default=sa.false()),
    sqlite_autoincrement=True,
)
sa.Index("interactions_newest", interactions.c.occurred_at_us.desc(), interactions.c.seq.desc())

flags = sa.Table(
    "flags",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("flag_id", sa.Text, nullable=False, unique=True),
    sa.Column("interaction_id", sa.Text, sa.ForeignKey("interactions.interaction_id"), nullable=False),
    sa.Column("detector", sa.Text, nullable=False),
    sa.Column("severity", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    # JSON list of strings.
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("created_at_us", Micros, nullable=False),
    # Where the evidence sits: [{"field": "answer", "start": 10, "end": 24}, ...] (detectors.Span).
    sa.Column("spans", sa.JSON, nullable=False, server_default=EMPTY_JSON_LIST),
    sqlite_autoincrement=True,
)
sa.Index("flags_newest", flags.c.created_at_us.desc(), flags.c.seq.desc())
sa.Index("flags_by_interaction", flags.c.interaction_id, flags.c.created_at_us.desc(), flags.c.seq.desc())

# Every FeedbackEvent, positive ones too; flag_id is set once a negative or reported one became a flag,
# which waits until its interaction has arrived.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("feedback_id", sa.Text, nullable=False, unique=True),
    sa.Column("interaction_id", sa.Text, nullable=False, index=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("occurred_at_us", Micros, nullable=False),
    sa.Column("recorded_at_us", Micros, nullable=False),
    sa.Column("flag_id", sa.Text, nullable=True),
    sqlite_autoincrement=True,
)

review_items = sa.Table(
    "review_items",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Text, nullable=False, unique=True),
    # "flag" or "evaluation"
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("final_verdict", sa.Text, nullable=True),
    sa.Column("detector", sa.Text, nullable=False),
    # 0 for evaluation tasks, else the flag's severity.
    sa.Column("severity", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
    sa.Column("interaction_id", sa.Text, nullable=True),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("batch", sa.Text, nullable=False),
    sa.Column("criteria", sa.Text, nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    # JSON list of copilot.common.v1.Passage in proto JSON form.
    sa.Column("passages", sa.Text, nullable=False),
    # The flag's evidence spans, as in flags.spans; empty for evaluation tasks.
    sa.Column("spans", sa.JSON, nullable=False, server_default=EMPTY_JSON_LIST),
    # As in interactions.interrupted, so the queue can show and filter cut-off answers without a join.
    sa.Column("interrupted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("labels_required", sa.Integer, nullable=False),
    sa.Column("created_at_us", Micros, nullable=False),
    sa.Column("due_at_us", Micros, nullable=False),
    sa.Column("resolved_at_us", Micros, nullable=True),
    sa.Index("review_items_queue", "state", "due_at_us"),
    sa.Index("review_items_by_detector", "detector", "due_at_us"),
    sa.Index("review_items_by_batch", "batch", "due_at_us"),
    sqlite_autoincrement=True,
)

review_assignments = sa.Table(
    "review_assignments",
    metadata,
    sa.Column("item_id", sa.Text, sa.ForeignKey("review_items.item_id"), primary_key=True),
    sa.Column("reviewer", sa.Text, primary_key=True),
    sa.Column("assigned_at_us", Micros, nullable=False),
    sa.Index("review_assignments_by_reviewer", "reviewer"),
)

review_labels = sa.Table(
    "review_labels",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Text, sa.ForeignKey("review_items.item_id"), nullable=False),
    sa.Column("reviewer", sa.Text, nullable=False),
    sa.Column("verdict", sa.Text, nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("adjudication", sa.Boolean, nullable=False),
    sa.Column("labeled_at_us", Micros, nullable=False),
    sa.UniqueConstraint("item_id", "reviewer", "adjudication", name="review_labels_one_per_reviewer"),
    sqlite_autoincrement=True,
)

review_comments = sa.Table(
    "review_comments",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("item_id", sa.Text, sa.ForeignKey("review_items.item_id"), nullable=False, index=True),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at_us", Micros, nullable=False),
    sqlite_autoincrement=True,
)

# Where round-robin assignment continues in each reviewer pool, so a restart does not start over.
review_cursors = sa.Table(
    "review_cursors",
    metadata,
    sa.Column("pool", sa.Text, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)

# The window detectors' baselines (services/monitor/drift.py), one row per detector (and embedding model),
# so a restart keeps comparing with the baseline it had.
detector_baselines = sa.Table(
    "detector_baselines",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    # The baseline's figures as JSON: its size, rates, and the dtype and shape of ``data``.
    sa.Column("summary", sa.JSON, nullable=False),
    # The baseline's values as a raw little-endian array: embeddings or top scores.
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at_us", Micros, nullable=False),
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def without_nul(value: Any) -> Any:
    """``value`` with each NUL character in its strings, however deeply nested in lists, tuples and dicts,
    replaced by U+FFFD. PostgreSQL refuses NUL in text (a question holding one failed its whole Kafka batch,
    forever); SQLite takes it, but both stores keep the same text, and a reader still sees that something
    was there."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_nul(item) for item in value)
    return value


def now_us() -> int:
    return time.time_ns() // 1_000


def from_us(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


def insert_ignoring_duplicates(
    conn: sa.Connection, table: sa.Table, key: str, values: dict[str, Any]
) -> bool:
    """Inserts unless a row with the same key exists (one statement, no race); True when it inserted."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    # RETURNING rather than rowcount, which drivers report as -1 when they add an implicit RETURNING.
    statement = insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return conn.execute(statement, values).first() is not None


def insert_many_ignoring_duplicates(
    conn: sa.Connection, table: sa.Table, key: str, rows: Sequence[dict[str, Any]]
) -> set[Any]:
    """Inserts each row unless one with the same key exists (or comes earlier in ``rows``); returns the keys
    it inserted. One multi-row statement per few hundred rows instead of one per row."""
    if not rows:
        return set()
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    return set(conn.execute(statement, list(rows)).scalars())
