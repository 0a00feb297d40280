"""The monitor's store: consumed interactions, user feedback, the flags raised on them and the review queue.

SQLite by default (a file, or ``:memory:`` in tests), PostgreSQL in production (a
``postgresql+psycopg://`` URL), through SQLAlchemy Core. Alembic migrations run when the store opens. Every
write is one transaction keyed on the event id, so a replayed Kafka message changes nothing. The consumer
stores a whole Kafka batch with ``record_many``: a few multi-row statements instead of a few per event.
Every value written or looked up has its NUL characters replaced by U+FFFD (``schema.without_nul``), as
PostgreSQL refuses them in text.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.pool import StaticPool

from copilot.events.v1 import events_pb2
from services.monitor.detectors import Finding, Severity, Span
from services.monitor.metrics import MonitorMetrics
from services.monitor.review import ItemKind, NewItem, ReviewPolicy, open_items
from services.monitor.schema import (
    detector_baselines,
    feedback,
    flags,
    from_us,
    insert_ignoring_duplicates,
    insert_many_ignoring_duplicates,
    interactions,
    now_us,
    without_nul,
)

# Fixed so that flag ids stay the same across processes and replays.
_FLAG_NAMESPACE = uuid.UUID("6f0d7c52-3b0e-4f4e-9a51-1f6a2f0c8e37")
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision of the hand-written SQLite schema (PRAGMA user_version 1) that Alembic took over.
_LEGACY_REVISION = "0001"

FEEDBACK_DETECTOR = "feedback"
_FEEDBACK_SEVERITY = {
    events_pb2.FEEDBACK_RATING_NEGATIVE: Severity.MEDIUM,
    events_pb2.FEEDBACK_RATING_REPORTED: Severity.HIGH,
}
_FEEDBACK_REASON = {
    events_pb2.FEEDBACK_RATING_NEGATIVE: "the user rated the answer negatively",
    events_pb2.FEEDBACK_RATING_REPORTED: "the user reported the answer",
}


@dataclass(frozen=True)
class StoredFlag:
    flag_id: str
    interaction_id: str
    detector: str
    severity: Severity
    reason: str
    evidence: tuple[str, ...]
    created_at: datetime
    user_id: str
    question: str
    spans: tuple[Span, ...] = ()
    # The caller cancelled mid-stream: the flagged answer is what had been sent.
    interrupted: bool = False


@dataclass(frozen=True)
class StoredInteraction:
    interaction_id: str
    user_id: str
    question: str
    answer: str
    refused: bool
    flag_count: int
    occurred_at: datetime
    # The caller cancelled mid-stream; the answer is what had been sent.
    interrupted: bool = False


def _flag_id(event_id: str, detector: str, index: int) -> str:
    """The id of the index-th flag a detector raised on an event. The unit separator appears in neither event
    ids nor detector names, so no two triples join to the same name."""
    return str(uuid.uuid5(_FLAG_NAMESPACE, f"{event_id}\x1f{detector}\x1f{index}"))


def _feedback_flag_id(feedback_id: str) -> str:
    # Two fields, where detector flags have three, so the two kinds never share a name.
    return str(uuid.uuid5(_FLAG_NAMESPACE, f"{FEEDBACK_DETECTOR}\x1f{feedback_id}"))


def flag_ids(event_id: str, findings: Sequence[Finding]) -> list[str]:
    """The ids the store gives the flags of these findings on this event (also their review items' ids)."""
    per_detector: dict[str, int] = {}
    ids = []
    for finding in findings:
        index = per_detector.get(finding.detector, 0)
        per_detector[finding.detector] = index + 1
        ids.append(_flag_id(event_id, finding.detector, index))
    return ids


def _flag_rows(event_id: str, findings: Sequence[Finding], now: int) -> list[dict[str, Any]]:
    return [
        {
            "flag_id": flag_id,
            "interaction_id": event_id,
            "detector": finding.detector,
            "severity": int(finding.severity),
            "reason": finding.reason,
            # JSON would keep a NUL as the escape \u0000, which reads back as NUL.
            "evidence": json.dumps(without_nul(list(finding.evidence)), ensure_ascii=False),
            "spans": [span.to_json() for span in finding.spans],
            "created_at_us": now,
        }
        for finding, flag_id in zip(findings, flag_ids(event_id, findings), strict=True)
    ]


def _interaction_row(event: events_pb2.InteractionEvent, now: int) -> dict[str, Any]:
    return {
        "interaction_id": event.event_id,
        "user_id": event.user_id,
        "question": event.question,
        "answer": event.answer,
        "refused": event.refused,
        "occurred_at_us": _occurred_us(event, now),
        "recorded_at_us": now,
        "event": event.SerializeToString(),
        "interrupted": event.interrupted,
    }


def _occurred_us(event: events_pb2.InteractionEvent, now: int) -> int:
    return event.occurred_at.ToMicroseconds() if event.HasField("occurred_at") else now


def _lock_interactions(conn: sa.Connection, interaction_ids: Sequence[str]) -> None:
    """Serialises writes about the same interactions across monitor replicas sharing a PostgreSQL database
    until the transaction ends. Without it an interaction and its feedback, stored at once by two replicas,
    would each miss the other and the feedback would never become a flag. The locks are taken in one order,
    so two batches never wait on each other in a circle. SQLite has one writer at a time anyway."""
    if conn.dialect.name == "postgresql" and interaction_ids:
        conn.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(id, 0) AS k"
                " FROM unnest(CAST(:ids AS text[])) AS t(id) ORDER BY k) AS keys"
            ),
            {"ids": list(interaction_ids)},
        )


def _feedback_flag_row(interaction_id: str, row: sa.Row[Any], now: int) -> dict[str, Any]:
    evidence = [f"{row.channel or 'feedback'}: {row.comment}"] if row.comment else []
    return {
        "flag_id": _feedback_flag_id(row.feedback_id),
        "interaction_id": interaction_id,
        "detector": FEEDBACK_DETECTOR,
        "severity": int(_FEEDBACK_SEVERITY[row.rating]),
        "reason": _FEEDBACK_REASON[row.rating],
        "evidence": json.dumps(evidence, ensure_ascii=False),
        "spans": [],
        "created_at_us": now,
    }


def _mark_feedback(conn: sa.Connection, marked: Sequence[dict[str, Any]]) -> None:
    """Records which flag each feedback became, so it is never flagged twice."""
    if marked:
        conn.execute(
            feedback.update()
            .where(feedback.c.feedback_id == sa.bindparam("key"))
            .values(flag_id=sa.bindparam("flag")),
            list(marked),
        )


def _review_items(event: events_pb2.InteractionEvent, flag_rows: Sequence[dict[str, Any]]) -> list[NewItem]:
    passages = list(event.passages)
    return [
        NewItem(
            item_id=flag["flag_id"],
            kind=ItemKind.FLAG,
            detector=flag["detector"],
            severity=Severity(flag["severity"]),
            question=event.question,
            answer=event.answer,
            passages=passages,
            reason=flag["reason"],
            evidence=json.loads(flag["evidence"]),
            spans=[Span.from_json(span) for span in flag["spans"]],
            interaction_id=event.event_id,
            user_id=event.user_id,
            tenant=event.tenant,
            interrupted=event.interrupted,
        )
        for flag in flag_rows
    ]


def database_url(database: Path | str) -> str:
    """A SQLAlchemy URL for a URL, a SQLite file path or ``:memory:``."""
    text = str(database)
    if "://" in text:
        return text
    return "sqlite://" if text == ":memory:" else f"sqlite:///{text}"


def _without_nul_parameters(
    _conn: sa.Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
) -> tuple[str, Any]:
    """Every statement's values lose their NUL characters (``without_nul``): what is written is stored, and
    an id or filter that holds one is looked up as it was stored, or matches nothing."""
    return statement, without_nul(parameters)


def _engine(url: str) -> sa.Engine:
    if not url.startswith("sqlite"):
        # A database that stopped answering must fail the call, not hang it.
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False},
        # One shared connection, or each pooled connection would see its own empty in-memory database.
        poolclass=StaticPool if memory else None,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling is off, so the "begin" hook below decides how to begin.
        dbapi_connection.isolation_level = None
        if not memory:
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")
        # Another process (a backup, a second reader) may hold the write lock for a moment.
        dbapi_connection.execute("PRAGMA busy_timeout = 5000")

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A writer takes the write lock up front: upgrading a read lock later can fail without waiting.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("writer") else "BEGIN")

    return engine


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def migrate(engine: sa.Engine) -> None:
    """Brings the schema to the newest revision; refuses a database made by newer code."""
    with engine.connect() as conn:
        conn = conn.execution_options(writer=True)
        with conn.begin():
            config = _alembic_config(conn)
            known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
            current = set(MigrationContext.configure(conn).get_current_heads())
            if current - known:
                found = ", ".join(sorted(current - known))
                raise RuntimeError(
                    f"the monitor database has schema revision {found}; this code knows {known}"
                )
            legacy = (
                not current
                and conn.dialect.name == "sqlite"
                and conn.exec_driver_sql("PRAGMA user_version").scalar() == 1
            )
            if legacy:
                command.stamp(config, _LEGACY_REVISION)
            command.upgrade(config, "head")


class FlagStore:
    """Thread-safe. Writes in this process take turns behind one lock; readers never wait for them."""

    def __init__(
        self,
        database: Path | str,
        review_policy: ReviewPolicy | None = None,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self.url = database_url(database)
        self.review_policy = review_policy or ReviewPolicy()
        self._metrics = metrics
        self._write_lock = threading.Lock()
        self._batch = threading.local()
        # An in-memory database is one shared connection, which must not run two transactions at once.
        self._read_lock: AbstractContextManager[Any] = (
            self._write_lock if self.url in ("sqlite://", "sqlite:///:memory:") else nullcontext()
        )
        self._engine = _engine(self.url)
        sa.event.listen(self._engine, "before_cursor_execute", _without_nul_parameters, retval=True)
        try:
            migrate(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    @contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """A read-only transaction."""
        with self._read_lock, self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def writing(self) -> Iterator[sa.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises. Inside ``batch`` it
        is the batch's transaction."""
        current: sa.Connection | None = getattr(self._batch, "conn", None)
        if current is not None:
            yield current
            return
        with self._write_lock, self._engine.connect() as conn:
            conn = conn.execution_options(writer=True)
            with conn.begin():
                yield conn

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Makes every write of this thread inside the block one transaction: a consumer stores a whole
        Kafka batch with one disk sync instead of one per event. All or nothing, like a single write."""
        reports: list[tuple[list[str], float | None]] = []
        with self.writing() as conn:
            self._batch.conn, self._batch.reports = conn, reports
            try:
                yield
            finally:
                self._batch.conn = self._batch.reports = None
        for detectors, delay_s in reports:
            self._report_now(detectors, delay_s)

    def record(self, event: events_pb2.InteractionEvent, findings: Sequence[Finding]) -> bool:
        """Stores the interaction, its flags, their review items and the flags of feedback that arrived before
        it, in one transaction. Returns False, writing nothing, when the event was stored before, so a
        replayed Kafka message never duplicates flags."""
        return self.record_many([(event, findings)])[0]

    def record_many(
        self, batch: Sequence[tuple[events_pb2.InteractionEvent, Sequence[Finding]]]
    ) -> list[bool]:
        """``record`` for many events in one transaction and a handful of statements. Returns, for each
        event, whether it was stored now; False for one stored before or earlier in ``batch``."""
        # By the id as stored, without NUL, which is what RETURNING and the feedback rows give back.
        first: dict[str, int] = {}
        for position, (event, _) in enumerate(batch):
            if not event.event_id:
                raise ValueError("event has no event_id to deduplicate on")
            first.setdefault(without_nul(event.event_id), position)
        if not first:
            return []
        now = now_us()
        with self.writing() as conn:
            _lock_interactions(conn, list(first))
            inserted = insert_many_ignoring_duplicates(
                conn,
                interactions,
                "interaction_id",
                [_interaction_row(batch[p][0], now) for p in first.values()],
            )
            new = {key: position for key, position in first.items() if key in inserted}
            waiting = self._waiting_feedback(conn, list(new))
            flag_rows: list[dict[str, Any]] = []
            items: list[NewItem] = []
            per_event: list[tuple[list[str], float]] = []
            marked: list[dict[str, Any]] = []
            for key, position in new.items():
                event, findings = batch[position]
                rows = _flag_rows(event.event_id, findings, now)
                for row in waiting.get(key, ()):
                    rows.append(_feedback_flag_row(event.event_id, row, now))
                    marked.append({"key": row.feedback_id, "flag": rows[-1]["flag_id"]})
                if rows:
                    flag_rows += rows
                    items += _review_items(event, rows)
                per_event.append(([row["detector"] for row in rows], (now - _occurred_us(event, now)) / 1e6))
            _mark_feedback(conn, marked)
            if flag_rows:
                conn.execute(flags.insert(), flag_rows)
            open_items(conn, items, self.review_policy, now)
        for detectors, delay_s in per_event:
            self._report(detectors, delay_s)
        stored = set(new.values())
        return [position in stored for position in range(len(batch))]

    def add_findings(self, event: events_pb2.InteractionEvent, findings: Sequence[Finding]) -> int:
        """Adds flags to an interaction stored before, such as those of the sampled detectors that run after
        it was recorded; returns how many were new. Their ids come from the event id, detector and position,
        so a replay adds nothing. Detectors that also ran in ``record`` must not report here: their ids
        would collide."""
        now = now_us()
        with self.writing() as conn:
            stored = conn.execute(
                sa.select(interactions.c.interaction_id).where(
                    interactions.c.interaction_id == event.event_id
                )
            ).first()
            if stored is None:
                raise ValueError(f"interaction {event.event_id!r} is not stored")
            rows = _flag_rows(event.event_id, findings, now)
            added = insert_many_ignoring_duplicates(conn, flags, "flag_id", rows)
            new_rows = [row for row in rows if row["flag_id"] in added]
            open_items(conn, _review_items(event, new_rows), self.review_policy, now)
        self._report([row["detector"] for row in new_rows], None)
        return len(new_rows)

    def record_feedback(self, event: events_pb2.FeedbackEvent) -> bool:
        """Stores a user's feedback. Negative or reported feedback becomes a flag on its interaction, now if
        the interaction is stored, else when it arrives. Returns False when the feedback was stored before."""
        if not event.event_id or not event.interaction_id:
            raise ValueError("feedback needs an event_id and an interaction_id")
        now = now_us()
        row = {
            "feedback_id": event.event_id,
            "interaction_id": event.interaction_id,
            "user_id": event.user_id,
            "rating": int(event.rating),
            "comment": event.comment,
            "channel": event.channel,
            "occurred_at_us": event.occurred_at.ToMicroseconds() if event.HasField("occurred_at") else now,
            "recorded_at_us": now,
            "flag_id": None,
        }
        flag_rows = []
        with self.writing() as conn:
            _lock_interactions(conn, [event.interaction_id])
            if not insert_ignoring_duplicates(conn, feedback, "feedback_id", row):
                return False
            stored = conn.execute(
                sa.select(interactions.c.event).where(interactions.c.interaction_id == event.interaction_id)
            ).first()
            if stored is not None and event.rating in _FEEDBACK_SEVERITY:
                saved = conn.execute(
                    sa.select(feedback).where(feedback.c.feedback_id == event.event_id)
                ).one()
                flag_rows.append(_feedback_flag_row(event.interaction_id, saved, now))
                _mark_feedback(conn, [{"key": saved.feedback_id, "flag": flag_rows[0]["flag_id"]}])
                conn.execute(flags.insert(), flag_rows)
                interaction = events_pb2.InteractionEvent.FromString(stored.event)
                open_items(conn, _review_items(interaction, flag_rows), self.review_policy, now)
        self._report([row["detector"] for row in flag_rows], None)
        return True

    @staticmethod
    def _waiting_feedback(
        conn: sa.Connection, interaction_ids: Sequence[str]
    ) -> dict[str, list[sa.Row[Any]]]:
        """Negative and reported feedback that arrived before its interaction and has no flag yet."""
        waiting: dict[str, list[sa.Row[Any]]] = {}
        for start in range(0, len(interaction_ids), 500):
            for row in conn.execute(
                sa.select(feedback)
                .where(
                    feedback.c.interaction_id.in_(interaction_ids[start : start + 500]),
                    feedback.c.flag_id.is_(None),
                    feedback.c.rating.in_(list(_FEEDBACK_SEVERITY)),
                )
                .order_by(feedback.c.seq)
            ):
                waiting.setdefault(row.interaction_id, []).append(row)
        return waiting

    def _report(self, detectors: list[str], delay_s: float | None) -> None:
        """Counts what was stored, once it is committed."""
        pending: list[tuple[list[str], float | None]] | None = getattr(self._batch, "reports", None)
        if pending is not None:
            pending.append((detectors, delay_s))
        else:
            self._report_now(detectors, delay_s)

    def _report_now(self, detectors: list[str], delay_s: float | None) -> None:
        if self._metrics is None:
            return
        self._metrics.flags(detectors)
        if delay_s is not None:
            self._metrics.delay(delay_s)

    def load_baseline(self, name: str) -> tuple[dict[str, Any], bytes] | None:
        """A window detector's stored baseline (summary, raw values), or None when it has none yet."""
        with self.reading() as conn:
            row = conn.execute(
                sa.select(detector_baselines.c.summary, detector_baselines.c.data).where(
                    detector_baselines.c.name == name
                )
            ).first()
        return None if row is None else (dict(row.summary), bytes(row.data))

    def save_baseline(self, name: str, summary: dict[str, Any], data: bytes) -> None:
        """Stores a window detector's baseline, replacing the one it had. Inside ``batch`` it commits with
        the batch, as the inline detectors' writes do."""
        with self.writing() as conn:
            conn.execute(detector_baselines.delete().where(detector_baselines.c.name == name))
            conn.execute(
                detector_baselines.insert().values(
                    name=name, summary=summary, data=data, created_at_us=now_us()
                )
            )

    def delete_baseline(self, name: str) -> None:
        with self.writing() as conn:
            conn.execute(detector_baselines.delete().where(detector_baselines.c.name == name))

    def list_flags(self, limit: int = 50, interaction_id: str | None = None) -> list[StoredFlag]:
        """Flags, newest first; only those of one interaction when interaction_id is given."""
        _check_limit(limit)
        query = (
            sa.select(
                flags.c.flag_id,
                flags.c.interaction_id,
                flags.c.detector,
                flags.c.severity,
                flags.c.reason,
                flags.c.evidence,
                flags.c.created_at_us,
                flags.c.spans,
                interactions.c.user_id,
                interactions.c.question,
                interactions.c.interrupted,
            )
            .join(interactions, interactions.c.interaction_id == flags.c.interaction_id)
            .order_by(flags.c.created_at_us.desc(), flags.c.seq.desc())
            .limit(limit)
        )
        if interaction_id is not None:
            query = query.where(flags.c.interaction_id == interaction_id)
        with self.reading() as conn:
            rows = conn.execute(query).all()
        return [
            StoredFlag(
                flag_id=row.flag_id,
                interaction_id=row.interaction_id,
                detector=row.detector,
                severity=Severity(row.severity),
                reason=row.reason,
                evidence=tuple(json.loads(row.evidence)),
                created_at=from_us(row.created_at_us),
                user_id=row.user_id,
                question=row.question,
                spans=tuple(Span.from_json(span) for span in row.spans),
                interrupted=bool(row.interrupted),
            )
            for row in rows
        ]

    def list_interactions(self, limit: int = 50) -> list[StoredInteraction]:
        """Interactions, newest first by when they happened."""
        _check_limit(limit)
        flag_count = (
            sa.select(sa.func.count())
            .where(flags.c.interaction_id == interactions.c.interaction_id)
            .scalar_subquery()
        )
        with self.reading() as conn:
            rows = conn.execute(
                sa.select(
                    interactions.c.interaction_id,
                    interactions.c.user_id,
                    interactions.c.question,
                    interactions.c.answer,
                    interactions.c.refused,
                    interactions.c.occurred_at_us,
                    interactions.c.interrupted,
                    flag_count.label("flag_count"),
                )
                .order_by(interactions.c.occurred_at_us.desc(), interactions.c.seq.desc())
                .limit(limit)
            ).all()
        return [
            StoredInteraction(
                interaction_id=row.interaction_id,
                user_id=row.user_id,
                question=row.question,
                answer=row.answer,
                refused=bool(row.refused),
                flag_count=int(row.flag_count),
                occurred_at=from_us(row.occurred_at_us),
                interrupted=bool(row.interrupted),
            )
            for row in rows
        ]

    def close(self) -> None:
        self._engine.dispose()


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
