"""The flag store and review queue on a real PostgreSQL server (Debian's postgresql-15) started by the test,
through SQLAlchemy and psycopg 3: migrations, idempotent writes, feedback, the queue, concurrent writers, and
text holding NUL (which PostgreSQL refuses) through the store, the gRPC service, the review page and the
consumer on the real broker; answers the caller cut off, through all of them and the migration that added the
mark."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from kafka import KafkaProducer

from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.errors import NotFound
from copilot.events.v1 import events_pb2
from copilot.grpc_client import bearer, open_channel
from copilot.kafka import ensure_topics
from copilot.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from copilot.settings import AuthSettings
from services.monitor.consumer import MonitorConsumer
from services.monitor.detectors import Finding, Severity
from services.monitor.flagstore import FlagStore
from services.monitor.review import EvaluationSample, ItemFilter, ReviewPolicy, ReviewQueue, State, Verdict
from services.monitor.schema import metadata
from tests.conftest import free_port
from tests.integration.kafka_checks import wait_until
from tests.integration.monitor_standins import serve_monitor, serve_review_page
from tests.integration.test_monitor_consumer import _committed, _dead_letters, _topics
from tests.integration.test_monitor_interrupted import check_interrupted_answers
from tests.unit.test_flagstore import check_answers_cut_off_before_the_upgrade_are_marked

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
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0005"
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


def _with_nul(event_id: str) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(
        event_id=event_id,
        user_id="u\x00",
        question="How many\x00 days off?",
        answer="25 [1].\x00",
        passages=[common_pb2.Passage(chunk_id="c1", text="Leave: 25\x00 days.")],
    )


def test_text_with_nul_is_stored_with_a_replacement_character(database: str, tmp_path: Path) -> None:
    """PostgreSQL refuses NUL in text; both stores keep U+FFFD in its place, and a lookup by a value holding
    NUL finds what was stored under it, or nothing."""
    leak = Finding("pii", Severity.HIGH, "answer contains an IBAN", ("GB\x00 32",))
    stored = []
    for target in (database, tmp_path / "monitor.sqlite"):
        store = FlagStore(target, ReviewPolicy(labels_required=1))
        queue = ReviewQueue(store)
        # Reported feedback that arrives before its interaction, whose id holds a NUL too.
        assert store.record_feedback(
            events_pb2.FeedbackEvent(
                event_id="fb\x00",
                interaction_id="e\x001",
                rating=events_pb2.FEEDBACK_RATING_REPORTED,
                comment="wrong\x00",
                channel="slack",  # type: ignore[arg-type]
            )
        )
        batch = [(event("e0"), [leak]), (_with_nul("e\x001"), [leak])]
        assert store.record_many(batch) == [True, True]
        assert store.record_many(batch) == [False, False]
        [interaction] = [i for i in store.list_interactions() if i.interaction_id != "e0"]
        flags = store.list_flags(interaction_id="e\x001")
        assert sorted(f.detector for f in flags) == ["feedback", "pii"]
        [pii] = [f for f in flags if f.detector == "pii"]
        item = queue.get(pii.flag_id)
        queue.comment(item.item_id, "ann", "fine\x00")
        item = queue.label(item.item_id, "ann", Verdict.TRUE_POSITIVE, "real\x00", may_adjudicate=False)
        [sample] = queue.submit(
            [EvaluationSample("q\x00", "a", [common_pb2.Passage(text="p\x00")], "c\x00", "run\x00", "s1")]
        )
        evaluation = queue.get(sample)
        stored.append(
            (
                (interaction.interaction_id, interaction.user_id, interaction.question, interaction.answer),
                sorted((f.flag_id, f.evidence) for f in flags),
                (item.question, item.answer, item.passages[0].text, item.evidence),
                (item.comments[0].text, item.labels[0].comment, item.state),
                (evaluation.question, evaluation.passages[0].text, evaluation.criteria, evaluation.batch),
            )
        )
        # A lookup or filter holding NUL finds what was stored under it, and nothing else.
        with pytest.raises(NotFound):
            queue.get("x\x00y")
        assert store.list_flags(interaction_id="x\x00") == []
        assert queue.list_items(ItemFilter(detector="pii\x00")) == ([], 0)
        assert queue.agreement(detector="pii\x00") == []
        assert queue.list_items(ItemFilter(batch="run\x00"))[1] == 1
        store.close()
    assert stored[0] == stored[1]
    flag_evidence = sorted(evidence for _, evidence in stored[0][1])
    assert stored[0][0] == ("e\ufffd1", "u\ufffd", "How many\ufffd days off?", "25 [1].\ufffd")
    assert flag_evidence == [("GB\ufffd 32",), ("slack: wrong\ufffd",)]
    assert stored[0][2:] == (
        ("How many\ufffd days off?", "25 [1].\ufffd", "Leave: 25\ufffd days.", ("GB\ufffd 32",)),
        ("fine\ufffd", "real\ufffd", State.RESOLVED),
        ("q\ufffd", "p\ufffd", "c\ufffd", "run\ufffd"),
    )


def test_review_rpcs_and_page_take_nul_on_postgres(
    database: str, auth_settings: AuthSettings, issuer: DevIssuer
) -> None:
    """Requests holding NUL get an answer, not INTERNAL or HTTP 500: stored, or not found."""
    store = FlagStore(database, ReviewPolicy(labels_required=1))
    server = serve_monitor(store, auth_settings)
    web = serve_review_page(store, auth_settings)
    ops = issuer.mint("ops")
    try:
        rpc = monitor_pb2_grpc.MonitorServiceStub(open_channel(f"127.0.0.1:{server.port}"))
        sample = monitor_pb2.EvaluationSample(question="q\x00", answer="a")
        [item_id] = rpc.SubmitForReview(
            monitor_pb2.SubmitForReviewRequest(samples=[sample]), metadata=bearer(ops)
        ).item_ids
        commented = rpc.CommentReviewItem(
            monitor_pb2.CommentReviewItemRequest(item_id=item_id, text="looks\x00 fine"), metadata=bearer(ops)
        ).item
        assert (commented.question, commented.comments[0].text) == ("q\ufffd", "looks\ufffd fine")
        with pytest.raises(grpc.RpcError) as caught:
            rpc.GetReviewItem(monitor_pb2.GetReviewItemRequest(item_id="x\x00y"), metadata=bearer(ops))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        flags = rpc.ListFlags(monitor_pb2.ListFlagsRequest(interaction_id="x\x00"), metadata=bearer(ops))
        assert list(flags.flags) == []
        items = rpc.ListReviewItems(
            monitor_pb2.ListReviewItemsRequest(detector="x\x00"), metadata=bearer(ops)
        )
        assert list(items.items) == []

        with httpx.Client(
            base_url=web.url.rstrip("/"), headers={"authorization": f"Bearer {ops}"}, timeout=30
        ) as client:
            assert client.get("/?detector=%00").status_code == 200
            assert client.get("/items/%00").status_code == 404
            assert client.get("/agreement?detector=%00").status_code == 200
            form = re.search(r'name="form_token" value="([0-9a-f]+)"', client.get(f"/items/{item_id}").text)
            assert form is not None
            posted = client.post(f"/items/{item_id}/comment", data={"text": "ok\x00", "form_token": form[1]})
            assert posted.status_code == 303
            labelled = client.post(
                f"/items/{item_id}/label", data={"verdict": "good", "comment": "x\x00", "form_token": form[1]}
            )
            assert labelled.status_code == 303
        item = ReviewQueue(store).get(item_id)
        assert [c.text for c in item.comments][-1] == "ok\ufffd" and item.labels[0].comment == "x\ufffd"
    finally:
        web.stop()
        server.stop(1)
        store.close()


def test_consumer_stores_nul_and_dead_letters_what_it_cannot_store(
    database: str, kafka_bootstrap: str
) -> None:
    """A question or feedback comment holding NUL used to fail its batch on PostgreSQL, and the retried batch
    failed again for ever, so the monitor stored nothing more. An event that cannot be stored for another
    reason (an occurred_at out of range) goes to the dead-letter topic instead of blocking the others."""
    topic, feedback_topic, dlq, group = _topics()
    ensure_topics(kafka_bootstrap, [topic, feedback_topic, dlq], partitions=1)
    refused = event("e2")
    refused.occurred_at.seconds = 2**62
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for interaction in (event("e0"), _with_nul("e1"), refused, event("e3")):
        producer.send(topic, interaction.SerializeToString())
    negative = events_pb2.FeedbackEvent(
        event_id="fb1", interaction_id="e1", rating=events_pb2.FEEDBACK_RATING_NEGATIVE, comment="bad\x00"
    )
    producer.send(feedback_topic, negative.SerializeToString())
    producer.flush()
    producer.close()
    store = FlagStore(database)
    consumer = MonitorConsumer(kafka_bootstrap, topic, feedback_topic, group, dlq, store, [])
    consumer.start()
    try:
        done = wait_until(
            lambda: (
                _committed(kafka_bootstrap, group, topic, 1) == 4
                and _committed(kafka_bootstrap, group, feedback_topic, 1) == 1
            )
        )
    finally:
        consumer.stop()
    assert done and consumer.processed == 4
    interactions = {i.interaction_id: i.question for i in store.list_interactions()}
    assert interactions == {"e0": "q e0", "e1": "How many\ufffd days off?", "e3": "q e3"}
    [flag] = store.list_flags(interaction_id="e1")
    assert (flag.detector, flag.evidence) == ("feedback", ("feedback: bad\ufffd",))
    [(value, reason)] = _dead_letters(kafka_bootstrap, dlq, 1)
    assert value == refused.SerializeToString() and "Timestamp is not valid" in reason
    store.close()


def test_an_interrupted_answer_is_shown_and_judged_as_cut_off_on_postgres(
    database: str, kafka_bootstrap: str, auth_settings: AuthSettings, issuer: DevIssuer
) -> None:
    check_interrupted_answers(database, kafka_bootstrap, auth_settings, issuer)


def test_answers_cut_off_before_the_upgrade_are_marked_on_postgres(database: str) -> None:
    check_answers_cut_off_before_the_upgrade_are_marked(database)
