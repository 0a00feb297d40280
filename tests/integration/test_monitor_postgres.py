"""The flag store and review queue on a real PostgreSQL server (Debian's postgresql-15) started by the test,
through SQLAlchemy and psycopg 3: migrations, idempotent writes, feedback, the queue, concurrent writers."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from copilot.events.v1 import events_pb2
from services.monitor.detectors import Finding, Severity
from services.monitor.flagstore import FlagStore
from services.monitor.review import EvaluationSample, ItemFilter, ReviewPolicy, ReviewQueue, State, Verdict
from services.monitor.schema import metadata
from tests.conftest import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PII = Finding("pii", Severity.HIGH, "answer contains an IBAN", ("GB** 32",))
REFUSAL = Finding("refusal", Severity.LOW, "no readable source", ())


def _postgres_binaries() -> Path:
    """Debian's server; installed on first use when missing, as CI machines start without it."""
    if not (PG_BIN / "initdb").exists() and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"],
            capture_output=True,
            timeout=600,
            check=False,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
    if not (PG_BIN / "initdb").exists():
        pytest.skip(
            f"PostgreSQL server not installed ({PG_BIN}/initdb missing)"
            " and `apt-get install postgresql` failed"
        )
    return PG_BIN


def _as_postgres(command: str) -> None:
    # initdb refuses to run as root.
    subprocess.run(["su", "postgres", "-c", command], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    binaries = _postgres_binaries()
    home = Path(tempfile.mkdtemp(prefix="copilot-pg-"))
    shutil.chown(home, "postgres", "postgres")
    data, port = home / "data", free_port()
    _as_postgres(f"{binaries}/initdb -D {data} -U postgres --auth=trust -E UTF8 --no-sync")
    _as_postgres(
        f"{binaries}/pg_ctl -D {data} -l {home}/server.log -w "
        f"-o '-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off' start"
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        _as_postgres(f"{binaries}/pg_ctl -D {data} -m immediate -w stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A fresh database per test, so each starts from an empty schema."""
    name = f"monitor_{free_port()}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


def event(event_id: str) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(event_id=event_id, user_id="u", question=f"q {event_id}", answer="a")


def test_migrations_match_the_schema_and_a_restart_keeps_data(database: str) -> None:
    store = FlagStore(database)
    assert store.record(event("e1"), [PII, REFUSAL]) is True
    store.close()
    reopened = FlagStore(database)
    assert reopened.record(event("e1"), [PII]) is False
    assert sorted(f.detector for f in reopened.list_flags()) == ["pii", "refusal"]
    reopened.close()
    engine = sa.create_engine(database)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0004"
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_feedback_waits_for_its_interaction_and_ids_match_sqlite(database: str, tmp_path: Path) -> None:
    flag_ids = []
    for target in (database, tmp_path / "monitor.sqlite"):
        store = FlagStore(target)
        feedback = events_pb2.FeedbackEvent(
            event_id="fb1", interaction_id="e1", rating=events_pb2.FEEDBACK_RATING_REPORTED, comment="unsafe"
        )
        assert store.record_feedback(feedback) is True
        assert store.record_feedback(feedback) is False
        assert store.list_flags() == []
        store.record(event("e1"), [PII])
        flags = store.list_flags()
        assert sorted((f.detector, f.severity) for f in flags) == [
            ("feedback", Severity.HIGH),
            ("pii", Severity.HIGH),
        ]
        flag_ids.append(sorted(f.flag_id for f in flags))
        store.close()
    assert flag_ids[0] == flag_ids[1]


def test_review_queue_on_postgres(database: str) -> None:
    store = FlagStore(database, ReviewPolicy(labels_required=2, reviewers=("ann", "bob", "cy")))
    queue = ReviewQueue(store)
    store.record(event("e1"), [PII])
    store.record(event("e2"), [PII])
    items, total = queue.list_items(ItemFilter(detector="pii"))
    assert total == 2 and [i.assignees for i in items] == [("ann", "bob"), ("ann", "cy")]
    queue.label(items[0].item_id, "ann", Verdict.TRUE_POSITIVE, "real", may_adjudicate=False)
    resolved = queue.label(items[0].item_id, "bob", Verdict.TRUE_POSITIVE, "", may_adjudicate=False)
    assert (resolved.state, resolved.final_verdict) == (State.RESOLVED, Verdict.TRUE_POSITIVE)
    queue.label(items[1].item_id, "ann", Verdict.TRUE_POSITIVE, "", may_adjudicate=False)
    assert (
        queue.label(items[1].item_id, "cy", Verdict.FALSE_POSITIVE, "", may_adjudicate=False).state
        == State.ESCALATED
    )
    ids = queue.submit([EvaluationSample("q", "a", [], "c", "run-1", sample_id="s1")] * 1)
    assert queue.submit([EvaluationSample("q", "a", [], "c", "run-1", sample_id="s1")]) == ids
    assert [c.item_id for c in queue.export()] == [items[0].item_id]
    [detector, pair_ab, pair_ac] = queue.agreement(resamples=50)
    assert (detector.name, pair_ab.name, pair_ac.name) == ("pii", "ann & bob", "ann & cy")
    assert detector.figures.items == 2 and detector.figures.percent_agreement is not None
    assert detector.figures.percent_agreement.value == pytest.approx(0.5)
    store.close()


def test_concurrent_writers_store_each_event_once(database: str) -> None:
    """Two stores on one database, as two monitor replicas would be, replaying the same events."""
    stores = [FlagStore(database), FlagStore(database)]
    events = [event(f"e{n}") for n in range(30)]

    def record_all(store: FlagStore) -> int:
        return sum(store.record(e, [PII, REFUSAL]) for e in events)

    with ThreadPoolExecutor(max_workers=4) as pool:
        stored = sum(pool.map(record_all, stores * 2))
    assert stored == len(events)
    assert len(stores[0].list_flags(limit=1000)) == 2 * len(events)
    assert ReviewQueue(stores[1]).open_count() == 2 * len(events)
    for store in stores:
        store.close()


def test_concurrent_batches_in_different_orders_store_each_event_once(database: str) -> None:
    """Two replicas storing overlapping Kafka batches, each in its own order, with feedback waiting for some
    of the events: the interaction locks are taken in one order, so neither waits on the other in a circle."""
    stores = [FlagStore(database), FlagStore(database)]
    events = [event(f"e{n}") for n in range(60)]
    for n in range(0, 60, 6):
        stores[0].record_feedback(
            events_pb2.FeedbackEvent(
                event_id=f"fb{n}", interaction_id=f"e{n}", rating=events_pb2.FEEDBACK_RATING_NEGATIVE
            )
        )

    def record_batches(store: FlagStore, order: list[events_pb2.InteractionEvent]) -> int:
        stored = 0
        for start in range(0, len(order), 15):
            stored += sum(store.record_many([(e, [PII, REFUSAL]) for e in order[start : start + 15]]))
        return stored

    orders = [events, events[::-1], events[1::2] + events[::2], events[::2] + events[1::2]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        stored = sum(pool.map(record_batches, stores * 2, orders))
    assert stored == len(events)
    flags = stores[1].list_flags(limit=1000)
    assert len(flags) == 2 * len(events) + 10
    assert len([f for f in flags if f.detector == "feedback"]) == 10
    assert ReviewQueue(stores[1]).open_count() == len(flags)
    for store in stores:
        store.close()
