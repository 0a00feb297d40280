from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from copilot.events.v1 import events_pb2
from services.monitor.detectors import Finding, Severity
from services.monitor.flagstore import FlagStore

PII = Finding("pii", Severity.HIGH, "answer contains an IBAN", ("GB** **** **** **** **54 32",))
PII_EMAIL = Finding("pii", Severity.MEDIUM, "answer contains an email address", ("jane@acme-corp.com",))
REFUSAL = Finding("refusal", Severity.LOW, "no readable source covered the question", ("Where is X?",))


def event(event_id: str, second: int, question: str = "Where is X?") -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(
        event_id=event_id,
        occurred_at=Timestamp(seconds=1_767_225_600 + second, nanos=123_456_000),
        user_id=f"user-{event_id}",
        question=question,
        answer=f"answer to {event_id}",
        refused=event_id.endswith("r"),
    )


@pytest.fixture
def store() -> Iterator[FlagStore]:
    flag_store = FlagStore(":memory:")
    yield flag_store
    flag_store.close()


def test_record_and_list(store: FlagStore) -> None:
    assert store.record(event("e1", 0, "Where is the IBAN?"), [PII, PII_EMAIL]) is True

    flags = store.list_flags()
    assert [(f.detector, f.severity, f.reason, f.evidence) for f in flags] == [
        ("pii", Severity.MEDIUM, "answer contains an email address", ("jane@acme-corp.com",)),
        ("pii", Severity.HIGH, "answer contains an IBAN", ("GB** **** **** **** **54 32",)),
    ]
    assert {(f.interaction_id, f.user_id, f.question) for f in flags} == {
        ("e1", "user-e1", "Where is the IBAN?")
    }
    assert all(f.created_at.tzinfo is UTC for f in flags)
    assert len({f.flag_id for f in flags}) == 2

    [interaction] = store.list_interactions()
    assert interaction.interaction_id == "e1"
    assert interaction.user_id == "user-e1"
    assert interaction.answer == "answer to e1"
    assert interaction.refused is False
    assert interaction.flag_count == 2
    assert interaction.occurred_at == datetime(2026, 1, 1, 0, 0, 0, 123_456, tzinfo=UTC)


def test_an_interaction_without_findings_is_stored(store: FlagStore) -> None:
    assert store.record(event("e1r", 0), []) is True
    assert store.list_flags() == []
    [interaction] = store.list_interactions()
    assert (interaction.refused, interaction.flag_count) == (True, 0)


def test_replayed_event_is_ignored(store: FlagStore) -> None:
    assert store.record(event("e1", 0), [PII]) is True
    assert store.record(event("e1", 0), [PII, REFUSAL]) is False
    assert [f.reason for f in store.list_flags()] == [PII.reason]
    assert [i.flag_count for i in store.list_interactions()] == [1]


def test_flag_ids_are_deterministic(tmp_path: Path) -> None:
    ids = []
    for name in ("a.db", "b.db"):
        flag_store = FlagStore(tmp_path / name)
        flag_store.record(event("e1", 0), [PII, REFUSAL, PII_EMAIL])
        ids.append([f.flag_id for f in flag_store.list_flags()])
        flag_store.close()
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 3


def test_newest_first_and_filters(store: FlagStore) -> None:
    # Recorded out of order: interactions sort by when they happened, flags by when they were raised.
    store.record(event("e2", 20), [REFUSAL])
    store.record(event("e1", 10), [PII])
    store.record(event("e3r", 30), [REFUSAL, PII_EMAIL])

    assert [i.interaction_id for i in store.list_interactions()] == ["e3r", "e2", "e1"]
    newest_two = store.list_interactions(limit=2)
    assert [(i.interaction_id, i.flag_count) for i in newest_two] == [("e3r", 2), ("e2", 1)]
    assert [f.interaction_id for f in store.list_flags()] == ["e3r", "e3r", "e1", "e2"]
    assert [f.interaction_id for f in store.list_flags(limit=1)] == ["e3r"]
    assert [f.reason for f in store.list_flags(interaction_id="e2")] == [REFUSAL.reason]
    assert store.list_flags(interaction_id="missing") == []


def test_event_without_id_is_rejected(store: FlagStore) -> None:
    with pytest.raises(ValueError):
        store.record(events_pb2.InteractionEvent(question="q"), [PII])


def test_limit_must_be_positive(store: FlagStore) -> None:
    with pytest.raises(ValueError):
        store.list_flags(limit=0)
    with pytest.raises(ValueError):
        store.list_interactions(limit=0)


def test_file_store_keeps_data_and_the_raw_event(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    original = event("e1", 0)
    flag_store = FlagStore(path)
    flag_store.record(original, [PII])
    flag_store.close()

    reopened = FlagStore(path)
    assert [f.reason for f in reopened.list_flags()] == [PII.reason]
    assert reopened.record(original, [PII]) is False
    reopened.close()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        [(raw,)] = conn.execute("SELECT event FROM interactions").fetchall()
    assert events_pb2.InteractionEvent.FromString(raw) == original
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 2"):
        FlagStore(path)


def test_concurrent_records_and_replays_store_each_event_once(tmp_path: Path) -> None:
    flag_store = FlagStore(tmp_path / "monitor.db")
    events = [event(f"e{n}", n) for n in range(40)]

    def record_all() -> list[bool]:
        return [flag_store.record(e, [PII, REFUSAL]) for e in events]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [future.result() for future in [pool.submit(record_all) for _ in range(4)]]

    assert sum(stored for run in results for stored in run) == len(events)
    assert len(flag_store.list_flags(limit=1_000)) == 2 * len(events)
    assert {i.flag_count for i in flag_store.list_interactions(limit=1_000)} == {2}
    flag_store.close()
