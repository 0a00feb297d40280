from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from copilot.events.v1 import events_pb2
from services.monitor.detectors import Finding, Severity, Span
from services.monitor.flagstore import FlagStore, _alembic_config, database_url, migrate
from services.monitor.metrics import MonitorMetrics
from services.monitor.review import ItemFilter, ReviewPolicy, ReviewQueue
from services.monitor.schema import metadata

HEAD = "0005"

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
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        [(raw,)] = conn.execute("SELECT event FROM interactions").fetchall()
    assert events_pb2.InteractionEvent.FromString(raw) == original
    conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    FlagStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    with pytest.raises(RuntimeError, match="schema revision 9999"):
        FlagStore(path)


# The schema the hand-written migration list made before Alembic took over (PRAGMA user_version 1).
LEGACY_SCHEMA = """
    CREATE TABLE interactions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, interaction_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
        question TEXT NOT NULL, answer TEXT NOT NULL, refused INTEGER NOT NULL,
        occurred_at_us INTEGER NOT NULL, recorded_at_us INTEGER NOT NULL, event BLOB NOT NULL
    );
    CREATE INDEX interactions_newest ON interactions (occurred_at_us DESC, seq DESC);
    CREATE TABLE flags (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, flag_id TEXT NOT NULL UNIQUE,
        interaction_id TEXT NOT NULL REFERENCES interactions (interaction_id), detector TEXT NOT NULL,
        severity INTEGER NOT NULL, reason TEXT NOT NULL, evidence TEXT NOT NULL,
        created_at_us INTEGER NOT NULL
    );
    CREATE INDEX flags_newest ON flags (created_at_us DESC, seq DESC);
    CREATE INDEX flags_by_interaction ON flags (interaction_id, created_at_us DESC, seq DESC);
    PRAGMA user_version = 1;
"""


def test_a_database_of_the_hand_written_migrations_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY_SCHEMA)
        conn.execute(
            "INSERT INTO interactions (interaction_id, user_id, question, answer, refused, occurred_at_us,"
            " recorded_at_us, event) VALUES ('old', 'u', 'q', 'a', 0, 1, 1, x'')"
        )
        conn.execute(
            "INSERT INTO flags (flag_id, interaction_id, detector, severity, reason, evidence, created_at_us)"
            " VALUES ('f-old', 'old', 'pii', 3, 'answer contains an IBAN', '[]', 1)"
        )
    conn.close()
    store = FlagStore(path)
    assert [f.flag_id for f in store.list_flags()] == ["f-old"]
    assert store.record(event("old", 0), [PII]) is False
    assert store.record(event("e1", 5), [PII]) is True
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    conn.close()


def test_migrations_build_the_schema_the_code_uses() -> None:
    """Alembic's autogenerate comparison of the migrated database with schema.py finds no difference."""
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


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


def feedback(
    feedback_id: str, interaction_id: str, rating: int, comment: str = ""
) -> events_pb2.FeedbackEvent:
    return events_pb2.FeedbackEvent(
        event_id=feedback_id,
        interaction_id=interaction_id,
        user_id="u-feedback",
        rating=rating,  # type: ignore[arg-type]
        comment=comment,
        channel="slack",
    )


def test_negative_and_reported_feedback_become_flags(store: FlagStore) -> None:
    store.record(event("e1", 0), [])
    assert store.record_feedback(feedback("fb1", "e1", events_pb2.FEEDBACK_RATING_NEGATIVE, "wrong amount"))
    assert store.record_feedback(feedback("fb2", "e1", events_pb2.FEEDBACK_RATING_REPORTED))
    assert store.record_feedback(feedback("fb3", "e1", events_pb2.FEEDBACK_RATING_POSITIVE))
    # A redelivered feedback event changes nothing.
    assert not store.record_feedback(
        feedback("fb1", "e1", events_pb2.FEEDBACK_RATING_NEGATIVE, "wrong amount")
    )
    flags = store.list_flags(interaction_id="e1")
    assert sorted((f.detector, f.severity, f.evidence) for f in flags) == [
        ("feedback", Severity.MEDIUM, ("slack: wrong amount",)),
        ("feedback", Severity.HIGH, ()),
    ]
    assert [i.flag_count for i in store.list_interactions()] == [2]


def test_feedback_that_arrives_before_its_interaction_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    first = FlagStore(path)
    assert first.record_feedback(feedback("fb1", "later", events_pb2.FEEDBACK_RATING_REPORTED, "unsafe"))
    assert first.list_flags() == []
    first.close()
    # The monitor restarted in between: the waiting feedback is on disk, not in memory.
    second = FlagStore(path)
    assert second.record(event("later", 0), [PII]) is True
    assert sorted(f.detector for f in second.list_flags()) == ["feedback", "pii"]
    assert second.record(event("later", 0), [PII]) is False
    assert len(second.list_flags()) == 2
    second.close()


def test_feedback_flag_ids_are_deterministic(tmp_path: Path) -> None:
    ids = []
    for name in ("a.db", "b.db"):
        flag_store = FlagStore(tmp_path / name)
        flag_store.record_feedback(feedback("fb1", "e1", events_pb2.FEEDBACK_RATING_NEGATIVE))
        flag_store.record(event("e1", 0), [PII])
        ids.append(sorted(f.flag_id for f in flag_store.list_flags()))
        flag_store.close()
    assert ids[0] == ids[1] and len(set(ids[0])) == 2


def test_feedback_without_ids_is_rejected(store: FlagStore) -> None:
    with pytest.raises(ValueError):
        store.record_feedback(feedback("", "e1", events_pb2.FEEDBACK_RATING_NEGATIVE))
    with pytest.raises(ValueError):
        store.record_feedback(feedback("fb1", "", events_pb2.FEEDBACK_RATING_NEGATIVE))


def test_metrics_count_flags_per_detector_and_the_queue() -> None:
    reader = InMemoryMetricReader()
    monitor_metrics = MonitorMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    flag_store = FlagStore(":memory:", metrics=monitor_metrics)
    monitor_metrics.watch_queue(ReviewQueue(flag_store).open_count)
    flag_store.record(event("e1", 0), [PII, PII_EMAIL, REFUSAL])
    flag_store.record_feedback(feedback("fb1", "e1", events_pb2.FEEDBACK_RATING_REPORTED))
    monitor_metrics.lag("topic", 0, 7)
    points = {
        metric.name: metric.data.data_points
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    flagged = {p.attributes["detector"]: p.value for p in points["copilot.monitor.flags_raised"]}
    assert flagged == {"pii": 2, "refusal": 1, "feedback": 1}
    assert [p.value for p in points["copilot.monitor.review_queue_size"]] == [4]
    assert [p.value for p in points["copilot.monitor.consumer_lag"]] == [7]
    assert [p.count for p in points["copilot.monitor.event_delay"]] == [1]
    flag_store.close()


def test_findings_added_later_are_idempotent_and_queued(store: FlagStore) -> None:
    toxic = Finding("toxicity_model", Severity.MEDIUM, "toxic answer", ("****",))
    store.record(event("e1", 0), [PII])
    assert store.add_findings(event("e1", 0), [toxic]) == 1
    assert store.add_findings(event("e1", 0), [toxic]) == 0
    assert sorted(f.detector for f in store.list_flags()) == ["pii", "toxicity_model"]
    assert ReviewQueue(store).open_count() == 2
    with pytest.raises(ValueError, match="not stored"):
        store.add_findings(event("missing", 0), [toxic])


def test_evidence_spans_are_kept_on_the_flag_and_its_review_item(store: FlagStore) -> None:
    spans = (Span("answer", 10, 24), Span("passage:wiki#7", 0, 5))
    located = Finding("pii", Severity.HIGH, "answer contains an IBAN", ("GB** 32",), spans)
    store.record(event("e1", 0), [located, REFUSAL])
    flags = {f.detector: f for f in store.list_flags()}
    assert flags["pii"].spans == spans
    assert flags["refusal"].spans == ()
    items = {i.detector: i for i in ReviewQueue(store).list_items(ItemFilter())[0]}
    assert ReviewQueue(store).get(items["pii"].item_id).spans == spans
    assert ReviewQueue(store).get(items["refusal"].item_id).spans == ()


def test_a_batch_stores_each_new_event_once_with_waiting_feedback(tmp_path: Path) -> None:
    flag_store = FlagStore(tmp_path / "monitor.db", ReviewPolicy(labels_required=1, reviewers=("ann", "bob")))
    flag_store.record(event("e1", 0), [PII])
    flag_store.record_feedback(feedback("fb1", "e3", events_pb2.FEEDBACK_RATING_REPORTED, "wrong"))
    batch = [
        (event("e1", 0), [PII]),  # stored before: a replay
        (event("e2", 1), [PII, REFUSAL]),
        (event("e2", 1), [PII, REFUSAL]),  # the same message twice in one batch
        (event("e3", 2), []),
        (event("e4", 3), [REFUSAL]),
    ]
    with flag_store.batch():
        assert flag_store.record_many(batch) == [False, True, False, True, True]
    assert flag_store.record_many(batch) == [False] * 5
    assert flag_store.record_many([]) == []
    flags = Counter((f.interaction_id, f.detector) for f in flag_store.list_flags(limit=100))
    assert flags == Counter(
        [("e1", "pii"), ("e2", "pii"), ("e2", "refusal"), ("e3", "feedback"), ("e4", "refusal")]
    )
    items, total = ReviewQueue(flag_store).list_items(ItemFilter(), limit=100)
    assert total == 5
    # Round robin continues across the batch in the order the events came.
    assert [i.assignees for i in sorted(items, key=lambda i: (i.created_at, i.interaction_id))] == [
        ("ann",),
        ("bob",),
        ("ann",),
        ("bob",),
        ("ann",),
    ]
    with pytest.raises(ValueError, match="event_id"):
        flag_store.record_many([(events_pb2.InteractionEvent(), [])])
    flag_store.close()


def test_a_detector_baseline_is_kept_replaced_and_deleted(tmp_path: Path) -> None:
    database = tmp_path / "monitor.sqlite"
    store = FlagStore(database)
    assert store.load_baseline("retrieval_decay") is None
    store.save_baseline("retrieval_decay", {"size": 3, "no_result_rate": 0.1}, b"\x00\x01")
    store.save_baseline("retrieval_decay", {"size": 4, "no_result_rate": 0.2}, b"\x02")
    store.close()
    store = FlagStore(database)
    assert store.load_baseline("retrieval_decay") == ({"size": 4, "no_result_rate": 0.2}, b"\x02")
    store.delete_baseline("retrieval_decay")
    assert store.load_baseline("retrieval_decay") is None
    store.close()


def test_a_baseline_saved_inside_a_batch_commits_with_it(store: FlagStore) -> None:
    """The inline retrieval-decay detector saves its baseline while the consumer's batch is open; a batch
    that fails must take the baseline back with its events."""
    with pytest.raises(RuntimeError), store.batch():
        store.save_baseline("retrieval_decay", {"size": 1}, b"")
        raise RuntimeError("the store failed mid-batch")
    assert store.load_baseline("retrieval_decay") is None
    with store.batch():
        store.save_baseline("retrieval_decay", {"size": 1}, b"")
    assert store.load_baseline("retrieval_decay") == ({"size": 1}, b"")


def _cut_off(event_id: str, second: int) -> events_pb2.InteractionEvent:
    cut = event(event_id, second)
    cut.interrupted = True
    return cut


def test_a_cut_off_answer_is_interrupted_on_its_interaction_and_every_review_item(store: FlagStore) -> None:
    store.record(_cut_off("cut", 0), [PII])
    store.record(event("whole", 1), [PII])
    # Flags that come later take the mark from the stored event (feedback) or the event itself (sampled tier).
    store.record_feedback(feedback("fb1", "cut", events_pb2.FEEDBACK_RATING_REPORTED, "wrong"))
    store.add_findings(_cut_off("cut", 0), [Finding("toxicity_model", Severity.MEDIUM, "toxic answer", ())])
    assert {i.interaction_id: i.interrupted for i in store.list_interactions()} == {
        "cut": True,
        "whole": False,
    }
    queue = ReviewQueue(store)
    cut_items, total = queue.list_items(ItemFilter(interrupted_only=True))
    assert total == 3 and all(item.interrupted for item in cut_items)
    assert sorted(item.detector for item in cut_items) == ["feedback", "pii", "toxicity_model"]
    [whole] = [item for item in queue.list_items(ItemFilter())[0] if item.interaction_id == "whole"]
    assert whole.interrupted is False and queue.get(whole.item_id).interrupted is False


def test_every_flag_on_a_cut_off_answer_is_interrupted(store: FlagStore) -> None:
    store.record(_cut_off("cut", 0), [PII])
    store.record(event("whole", 1), [PII])
    store.record_feedback(feedback("fb1", "cut", events_pb2.FEEDBACK_RATING_REPORTED, "wrong"))
    store.add_findings(_cut_off("cut", 0), [Finding("toxicity_model", Severity.MEDIUM, "toxic answer", ())])
    assert sorted((f.interaction_id, f.detector, f.interrupted) for f in store.list_flags()) == [
        ("cut", "feedback", True),
        ("cut", "pii", True),
        ("cut", "toxicity_model", True),
        ("whole", "pii", False),
    ]


def check_answers_cut_off_before_the_upgrade_are_marked(target: Path | str) -> None:
    """Generation published ``interrupted`` before the monitor kept it: upgrading a database of the revision
    before reads the mark from each stored raw event. Shared with the PostgreSQL tests."""
    store = FlagStore(target)
    store.record(_cut_off("cut", 0), [PII])
    store.record(event("whole", 1), [PII])
    store.close()
    engine = sa.create_engine(database_url(target))
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), "0004")
        assert "interrupted" not in {c["name"] for c in sa.inspect(conn).get_columns("interactions")}
    engine.dispose()
    upgraded = FlagStore(target)
    assert {i.interaction_id: i.interrupted for i in upgraded.list_interactions()} == {
        "cut": True,
        "whole": False,
    }
    [item], _ = ReviewQueue(upgraded).list_items(ItemFilter(interrupted_only=True))
    assert (item.interaction_id, item.interrupted) == ("cut", True)
    upgraded.close()


def test_answers_cut_off_before_the_upgrade_are_marked(tmp_path: Path) -> None:
    check_answers_cut_off_before_the_upgrade_are_marked(tmp_path / "monitor.db")
