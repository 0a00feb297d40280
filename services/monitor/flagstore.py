"""SQLite store of the interactions the monitor consumed and the flags its detectors raised."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from copilot.events.v1 import events_pb2
from services.monitor.detectors import Finding, Severity

# Fixed so that flag ids stay the same across processes and replays.
_FLAG_NAMESPACE = uuid.UUID("6f0d7c52-3b0e-4f4e-9a51-1f6a2f0c8e37")

# Index i holds the script that takes the schema from version i to i + 1; append, never edit.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE interactions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        interaction_id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        refused INTEGER NOT NULL,
        occurred_at_us INTEGER NOT NULL,
        recorded_at_us INTEGER NOT NULL,
        event BLOB NOT NULL
    );
    CREATE INDEX interactions_newest ON interactions (occurred_at_us DESC, seq DESC);
    CREATE TABLE flags (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        flag_id TEXT NOT NULL UNIQUE,
        interaction_id TEXT NOT NULL REFERENCES interactions (interaction_id),
        detector TEXT NOT NULL,
        severity INTEGER NOT NULL,
        reason TEXT NOT NULL,
        evidence TEXT NOT NULL,
        created_at_us INTEGER NOT NULL
    );
    CREATE INDEX flags_newest ON flags (created_at_us DESC, seq DESC);
    CREATE INDEX flags_by_interaction ON flags (interaction_id, created_at_us DESC, seq DESC);
    """,
)

_FLAG_COLUMNS = """
    f.flag_id, f.interaction_id, f.detector, f.severity, f.reason, f.evidence, f.created_at_us,
    i.user_id, i.question
    FROM flags f JOIN interactions i ON i.interaction_id = f.interaction_id
"""


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


@dataclass(frozen=True)
class StoredInteraction:
    interaction_id: str
    user_id: str
    question: str
    answer: str
    refused: bool
    flag_count: int
    occurred_at: datetime


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# Integer microseconds: exact, and they sort in SQL without parsing.
def _now_us() -> int:
    return time.time_ns() // 1_000


def _from_us(microseconds: int) -> datetime:
    return _EPOCH + timedelta(microseconds=microseconds)


def _flag_id(event_id: str, detector: str, index: int) -> str:
    """The id of the index-th flag a detector raised on an event. The unit separator appears in neither event
    ids nor detector names, so no two triples join to the same name."""
    return str(uuid.uuid5(_FLAG_NAMESPACE, f"{event_id}\x1f{detector}\x1f{index}"))


class FlagStore:
    """Thread-safe: one connection behind a lock. WAL lets other processes read while the monitor writes."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        # Autocommit mode, so every transaction is an explicit BEGIN ... COMMIT below.
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            # Another process (a reviewer's CLI, a backup) may hold the write lock for a moment.
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._migrate(str(path))
        except BaseException:
            self._conn.close()
            raise

    def _migrate(self, path: str) -> None:
        version: int = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            known = len(_MIGRATIONS)
            raise RuntimeError(f"{path} has schema version {version}; this code knows up to {known}")
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            # executescript runs outside the connection's transaction handling, so the script carries its own.
            try:
                self._conn.executescript(f"BEGIN IMMEDIATE; {script} PRAGMA user_version = {number}; COMMIT;")
            except sqlite3.Error:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def record(self, event: events_pb2.InteractionEvent, findings: Sequence[Finding]) -> bool:
        """Stores the interaction and its flags in one transaction. Returns False, writing nothing, when the
        event was stored before, so a replayed Kafka message never duplicates flags."""
        if not event.event_id:
            raise ValueError("event has no event_id to deduplicate on")
        now_us = _now_us()
        occurred_us = event.occurred_at.ToMicroseconds() if event.HasField("occurred_at") else now_us
        per_detector: dict[str, int] = {}
        flag_rows = []
        for finding in findings:
            index = per_detector.get(finding.detector, 0)
            per_detector[finding.detector] = index + 1
            flag_rows.append(
                (
                    _flag_id(event.event_id, finding.detector, index),
                    event.event_id,
                    finding.detector,
                    int(finding.severity),
                    finding.reason,
                    json.dumps(list(finding.evidence), ensure_ascii=False),
                    now_us,
                )
            )
        with self._transaction() as conn:
            inserted = conn.execute(
                "INSERT INTO interactions (interaction_id, user_id, question, answer, refused,"
                " occurred_at_us, recorded_at_us, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (interaction_id) DO NOTHING",
                (
                    event.event_id,
                    event.user_id,
                    event.question,
                    event.answer,
                    int(event.refused),
                    occurred_us,
                    now_us,
                    event.SerializeToString(),
                ),
            ).rowcount
            if not inserted:
                return False
            conn.executemany(
                "INSERT INTO flags (flag_id, interaction_id, detector, severity, reason, evidence,"
                " created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                flag_rows,
            )
        return True

    def list_flags(self, limit: int = 50, interaction_id: str | None = None) -> list[StoredFlag]:
        """Flags, newest first; only those of one interaction when interaction_id is given."""
        _check_limit(limit)
        with self._lock:
            if interaction_id is None:
                rows = self._conn.execute(
                    f"SELECT {_FLAG_COLUMNS} ORDER BY f.created_at_us DESC, f.seq DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT {_FLAG_COLUMNS} WHERE f.interaction_id = ?"
                    " ORDER BY f.created_at_us DESC, f.seq DESC LIMIT ?",
                    (interaction_id, limit),
                ).fetchall()
        return [
            StoredFlag(
                flag_id=row[0],
                interaction_id=row[1],
                detector=row[2],
                severity=Severity(row[3]),
                reason=row[4],
                evidence=tuple(json.loads(row[5])),
                created_at=_from_us(row[6]),
                user_id=row[7],
                question=row[8],
            )
            for row in rows
        ]

    def list_interactions(self, limit: int = 50) -> list[StoredInteraction]:
        """Interactions, newest first by when they happened."""
        _check_limit(limit)
        with self._lock:
            rows = self._conn.execute(
                "SELECT i.interaction_id, i.user_id, i.question, i.answer, i.refused, i.occurred_at_us,"
                " (SELECT COUNT(*) FROM flags f WHERE f.interaction_id = i.interaction_id)"
                " FROM interactions i ORDER BY i.occurred_at_us DESC, i.seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            StoredInteraction(
                interaction_id=row[0],
                user_id=row[1],
                question=row[2],
                answer=row[3],
                refused=bool(row[4]),
                flag_count=row[6],
                occurred_at=_from_us(row[5]),
            )
            for row in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
