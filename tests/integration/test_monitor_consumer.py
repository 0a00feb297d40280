"""The monitor's consumer against the real broker: flags stored, feedback attached, bad messages
dead-lettered, no duplicates after a restart that re-reads uncommitted messages, and a monitor process
killed with SIGKILL mid-stream that loses nothing and duplicates nothing when it comes back."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import CommitFailedError, MessageSizeTooLargeError
from kafka.structs import TopicPartition
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.events.v1 import events_pb2
from copilot.kafka import ensure_topics
from services.monitor.consumer import MonitorConsumer
from services.monitor.detectors import (
    Finding,
    SampledRunner,
    Severity,
    Tier,
    default_detectors,
    run_detectors,
)
from services.monitor.flagstore import FlagStore
from services.monitor.metrics import MonitorMetrics
from services.monitor.review import ItemFilter, ReviewQueue
from tests.conftest import REPO, free_port
from tests.integration.kafka_checks import wait_until

STATELESS = {"pii", "secret", "prompt_injection", "ungrounded", "refusal", "acl_anomaly"}


class EveryAnswer:
    """A sampled-tier detector that flags every interaction it is given."""

    name = "every_answer"
    tier = Tier.SAMPLED
    sample_rate = 1.0

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        return [Finding(self.name, Severity.LOW, "inspected by the sampled tier", ())]


def _event(i: int, answer: str) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(
        event_id=f"evt-{i}",
        user_id="u1",
        question=f"question {i}",
        answer=answer,
        passages=[common_pb2.Passage(chunk_id="c1", text="The travel budget is 412,000 USD.")],
        cited_sources=[1] if "[1]" in answer else [],
    )


def _feedback(feedback_id: str, interaction_id: str, rating: int) -> events_pb2.FeedbackEvent:
    return events_pb2.FeedbackEvent(
        event_id=feedback_id,
        interaction_id=interaction_id,
        rating=rating,
        comment="wrong",
        channel="slack",  # type: ignore[arg-type]
    )


def _topics() -> tuple[str, str, str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"interactions-{suffix}", f"feedback-{suffix}", f"dlq-{suffix}", f"monitor-{suffix}"


def _dead_letters(bootstrap: str, dlq: str, expected: int) -> list[tuple[bytes, str]]:
    dead = KafkaConsumer(
        dlq,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
        group_id=f"dlq-reader-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    records = []
    for record in dead:
        records.append((record.value, dict(record.headers)["dead-letter-reason"].decode()))
        if len(records) == expected:
            break
    dead.close()
    return records


def test_consumer_flags_dead_letters_and_never_duplicates(kafka_bootstrap: str, tmp_path: Path) -> None:
    topic, feedback_topic, dlq, group = _topics()
    ensure_topics(kafka_bootstrap, [topic, feedback_topic, dlq], partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, _event(1, "The travel budget is 412,000 USD [1].").SerializeToString())
    producer.send(topic, _event(2, "Call me at +1 415 555 0100 or hr-help@acme.example.").SerializeToString())
    producer.send(topic, b"\xff\xfe not a protobuf")
    producer.send(topic, key=b"evt-9", value=None)  # a tombstone once stopped the consumer for good
    # Feedback on an interaction that has not arrived yet waits for it; feedback without its ids cannot.
    producer.send(
        feedback_topic, _feedback("fb-1", "evt-3", events_pb2.FEEDBACK_RATING_REPORTED).SerializeToString()
    )
    producer.send(
        feedback_topic, _feedback("fb-2", "", events_pb2.FEEDBACK_RATING_NEGATIVE).SerializeToString()
    )
    producer.flush()

    reader = InMemoryMetricReader()
    metrics = MonitorMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    store = FlagStore(tmp_path / "monitor.sqlite", metrics=metrics)
    sampled = SampledRunner([EveryAnswer()], store.add_findings)
    metrics.watch_sampled(sampled.counts)
    sampled.start()
    alerted: list[tuple[str, list[str], bool, int]] = []

    def alerts(event: events_pb2.InteractionEvent, findings: Sequence[Finding]) -> None:
        # What another process would see at this moment: the stored interaction and the committed offset.
        stored = event.event_id in {i.interaction_id for i in store.list_interactions()}
        committed = _committed(kafka_bootstrap, group, topic, 1)
        alerted.append((event.event_id, sorted({f.detector for f in findings}), stored, committed))

    consumer = MonitorConsumer(
        kafka_bootstrap,
        topic,
        feedback_topic,
        group,
        dlq,
        store,
        default_detectors(),
        metrics,
        sampled,
        alerts,
    )
    consumer.start()
    assert wait_until(lambda: len(store.list_interactions()) == 2 and consumer.processed == 3), (
        "2 events, 1 feedback"
    )
    consumer.stop()
    sampled.stop()
    # Alerts saw the flagged interaction only after its batch was stored and its offsets committed.
    assert alerted == [
        ("evt-1", ["acl_anomaly"], True, 4),
        ("evt-2", ["acl_anomaly", "pii", "ungrounded"], True, 4),
    ]
    # The sampled tier saw each stored interaction once, after its batch was committed.
    assert sorted(f.interaction_id for f in store.list_flags() if f.detector == "every_answer") == [
        "evt-1",
        "evt-2",
    ]
    points = {
        metric.name: metric.data.data_points
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    consumed = {
        (p.attributes["topic"], p.attributes["outcome"]): p.value
        for p in points["copilot.monitor.events_consumed"]
    }
    assert consumed == {
        (topic, "stored"): 2,
        (topic, "dead_lettered"): 2,
        (feedback_topic, "stored"): 1,
        (feedback_topic, "dead_lettered"): 1,
    }
    assert {p.attributes["outcome"]: p.value for p in points["copilot.monitor.sampled_events"]} == {
        "submitted": 2,
        "inspected": 2,
        "dropped": 0,
    }
    # Everything on the broker was read: no lag left on either topic.
    assert {(p.attributes["topic"], p.value) for p in points["copilot.monitor.consumer_lag"]} == {
        (topic, 0),
        (feedback_topic, 0),
    }
    flags = store.list_flags()
    pii = [f for f in flags if f.detector == "pii"]
    assert pii and pii[0].interaction_id == "evt-2"
    assert all(f.interaction_id != "evt-1" or f.detector != "pii" for f in flags)
    assert not [f for f in flags if f.detector == "feedback"]

    dead = _dead_letters(kafka_bootstrap, dlq, 3)
    assert sorted(reason.split(":")[0] for _, reason in dead) == [
        "FeedbackEvent without interaction_id",
        "undecodable InteractionEvent",
        "undecodable InteractionEvent",
    ]
    assert any("tombstone" in reason for _, reason in dead)
    assert b"\xff\xfe not a protobuf" in [value for value, _ in dead]

    # A replay of an already-stored event (as after a crash before commit) must not add flags.
    flag_count = len(store.list_flags(limit=1000))
    producer.send(topic, _event(2, "Call me at +1 415 555 0100 or hr-help@acme.example.").SerializeToString())
    producer.send(topic, _event(3, "No sources needed.").SerializeToString())
    producer.flush()
    restarted = MonitorConsumer(
        kafka_bootstrap, topic, feedback_topic, group, dlq, store, default_detectors()
    )
    restarted.start()
    assert wait_until(lambda: len(store.list_interactions()) == 3), (
        "the new event after restart should be stored"
    )
    restarted.stop()
    new_flags = store.list_flags(limit=1000)
    assert len([f for f in new_flags if f.interaction_id == "evt-2"]) == len(
        [f for f in flags if f.interaction_id == "evt-2"]
    )
    assert len(new_flags) > flag_count
    # The reported feedback became a HIGH flag and a review item once evt-3 arrived.
    [reported] = [f for f in new_flags if f.detector == "feedback"]
    assert (reported.interaction_id, reported.severity.name) == ("evt-3", "HIGH")
    assert ReviewQueue(store).list_items(ItemFilter(detector="feedback"))[1] == 1
    producer.close()
    store.close()


def _counts(path: Path) -> tuple[int, int, int]:
    """Interactions, flags and review items, read as another process would."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return tuple(  # type: ignore[return-value]
                conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("interactions", "flags", "review_items")
            )
    except sqlite3.OperationalError:
        return (0, 0, 0)


def _flags_by_detector(path: Path) -> Counter[str]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return Counter(
                dict(conn.execute("SELECT detector, COUNT(*) FROM flags GROUP BY detector").fetchall())
            )
    except sqlite3.OperationalError:
        return Counter()


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(reader.committed(TopicPartition(topic, p)) or 0 for p in range(partitions))
    finally:
        reader.close()


def test_monitor_killed_mid_stream_loses_and_duplicates_nothing(
    kafka_bootstrap: str, issuer: DevIssuer, tmp_path: Path
) -> None:
    topic, feedback_topic, dlq, group = _topics()
    ensure_topics(kafka_bootstrap, [topic, feedback_topic, dlq], partitions=3)
    answers = [
        "The travel budget is 412,000 USD [1].",
        "Write to jane.doe@acme-corp.com or call +1 415 867 5309.",
        "I could not find this in the documents you may read.",
        "Use api_key = sk_live_4eC39HqLyjWDarjtT1zdp7dc to call it.",
    ]
    events = [_event(i, answers[i % len(answers)]) for i in range(1200)]
    # Detectors that judge each event on its own; the statistical ones (latency, length) depend on what came
    # before, which a restart resets, so their counts are not compared.
    per_event = Counter(
        f.detector for e in events for f in run_detectors(default_detectors(), e) if f.detector in STATELESS
    )
    negative = [
        _feedback(f"fb-{i}", f"evt-{i}", events_pb2.FEEDBACK_RATING_NEGATIVE) for i in range(0, 1200, 40)
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    for e in events[:900]:
        producer.send(topic, key=e.event_id.encode(), value=e.SerializeToString())
    producer.flush()

    database = tmp_path / "monitor.sqlite"
    # Stands in for the incident tool or SIEM the monitor alerts (those servers cannot be reached from here).
    alerts: list[dict[str, object]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            alerts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    http_port = free_port()
    page = f"http://127.0.0.1:{http_port}"
    env = {
        **os.environ,
        "COPILOT_MONITOR_PORT": str(free_port()),
        "COPILOT_MONITOR_LOG_FORMAT": "text",
        "COPILOT_MONITOR_DATABASE": str(database),
        "COPILOT_MONITOR_CONSUMER_GROUP": group,
        "COPILOT_MONITOR_DEAD_LETTER_TOPIC": dlq,
        "COPILOT_MONITOR_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "COPILOT_MONITOR_KAFKA__INTERACTIONS_TOPIC": topic,
        "COPILOT_MONITOR_KAFKA__FEEDBACK_TOPIC": feedback_topic,
        "COPILOT_MONITOR_AUTH__ISSUER": issuer.issuer,
        "COPILOT_MONITOR_AUTH__AUDIENCE": issuer.audience,
        "COPILOT_MONITOR_HTTP_PORT": str(http_port),
        "COPILOT_MONITOR_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_address[1]}/hook",
        "COPILOT_MONITOR_REVIEW_BASE_URL": page,
    }

    def start(log_name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / log_name).open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "services.monitor.server"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    first = start("first.log")
    try:
        assert wait_until(lambda: _counts(database)[0] >= 100, 60), (tmp_path / "first.log").read_text()[
            -3000:
        ]
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    stored_at_kill = _counts(database)[0]
    committed_at_kill = _committed(kafka_bootstrap, group, topic, 3)
    assert stored_at_kill < 900, "the monitor should have been killed mid-stream"
    # Offsets are committed only after the store has the events: what Kafka skips, the store has.
    assert committed_at_kill <= stored_at_kill

    # Events and feedback keep coming while the monitor is down.
    for e in events[900:]:
        producer.send(topic, key=e.event_id.encode(), value=e.SerializeToString())
    for f in negative:
        producer.send(feedback_topic, key=f.interaction_id.encode(), value=f.SerializeToString())
    producer.flush()
    producer.close()

    second = start("second.log")
    try:
        done = wait_until(
            lambda: (
                _counts(database)[0] == 1200 and _flags_by_detector(database)["feedback"] == len(negative)
            ),
            90,
        )
        assert done, f"{_counts(database)}; " + (tmp_path / "second.log").read_text()[-3000:]
        # The same process serves the review page, and alerts link to the flag's item on it.
        bearer = {"authorization": f"Bearer {issuer.mint('ops')}"}
        assert httpx.get(f"{page}/healthz").text == "ok"
        assert httpx.get(f"{page}/", headers=bearer).status_code == 200
        assert wait_until(lambda: any(a["detector"] == "secret" for a in alerts), 30), alerts
        [leak, *_] = [a for a in alerts if a["detector"] == "secret"]
        assert leak["severity"] == "HIGH" and str(leak["review_url"]).startswith(f"{page}/items/")
        item = httpx.get(str(leak["review_url"]), headers=bearer)
        assert item.status_code == 200 and "Flag: secret" in item.text
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
        hook.shutdown()
        hook.server_close()
    interactions, flags, review_items = _counts(database)
    assert interactions == 1200
    # Each event's flags were stored exactly once, and each flag has its one review item.
    by_detector = _flags_by_detector(database)
    assert {d: n for d, n in by_detector.items() if d in STATELESS} == dict(per_event)
    assert by_detector["feedback"] == len(negative)
    assert flags == review_items == sum(by_detector.values())


def test_an_event_the_store_refuses_is_dead_lettered_and_blocks_nothing(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An event whose occurred_at is out of range fails to store every time it is tried; it must not hold
    back the events beside it forever. The database being locked, by contrast, is waited out."""
    topic, feedback_topic, dlq, group = _topics()
    ensure_topics(kafka_bootstrap, [topic, feedback_topic, dlq], partitions=1)
    refused = _event(2, "No sources needed.")
    refused.occurred_at.seconds = 2**62
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for value in (
        _event(1, "No sources needed.").SerializeToString(),
        refused.SerializeToString(),
        b"\xff\xfe not a protobuf",
        _event(3, "No sources needed.").SerializeToString(),
    ):
        producer.send(topic, value)
    producer.flush()
    producer.close()

    reader = InMemoryMetricReader()
    metrics = MonitorMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    database = tmp_path / "monitor.sqlite"
    store = FlagStore(database, metrics=metrics)
    # Another writer holds the database for a while: the batch fails on that, not on what it holds.
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    consumer = MonitorConsumer(kafka_bootstrap, topic, feedback_topic, group, dlq, store, [], metrics)
    consumer.start()
    try:
        assert wait_until(lambda: "storing a batch failed; retrying it" in caplog.text, 30)
        assert store.list_interactions() == []
        assert _committed(kafka_bootstrap, group, topic, 1) == 0
        lock.rollback()
        assert wait_until(lambda: _committed(kafka_bootstrap, group, topic, 1) == 4), caplog.text[-3000:]
    finally:
        lock.close()
        consumer.stop()
    assert sorted(i.interaction_id for i in store.list_interactions()) == ["evt-1", "evt-3"]
    # The refused event and the undecodable record went to the dead-letter topic, with their reasons.
    dead = _dead_letters(kafka_bootstrap, dlq, 2)
    assert sorted(reason.split(":")[0] for _, reason in dead) == [
        "the monitor store refused it",
        "undecodable InteractionEvent",
    ]
    [(value, reason)] = [(v, r) for v, r in dead if r.startswith("the monitor store")]
    assert value == refused.SerializeToString() and "Timestamp is not valid" in reason
    consumed = {
        (p.attributes["topic"], p.attributes["outcome"]): p.value
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "copilot.monitor.events_consumed"
        for p in metric.data.data_points
    }
    assert consumed == {(topic, "stored"): 2, (topic, "dead_lettered"): 2}
    assert f"the store refused {topic}/0@1" in caplog.text
    store.close()


def test_a_failed_offset_commit_still_hands_the_stored_interactions_on_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The store commits, then Kafka refuses the offset commit (a rebalance): the retried batch finds the
    interaction stored already, yet its alert and its sampled inspection are still owed, once."""
    topic, feedback_topic, dlq, group = _topics()
    ensure_topics(kafka_bootstrap, [topic, feedback_topic, dlq], partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, _event(2, "Call me at +1 415 555 0100 or hr-help@acme.example.").SerializeToString())
    producer.flush()
    producer.close()
    store = FlagStore(tmp_path / "monitor.sqlite")
    alerted: list[str] = []
    sampled: list[str] = []

    class Sampled:
        def submit(self, event: events_pb2.InteractionEvent) -> None:
            sampled.append(event.event_id)

    consumer = MonitorConsumer(
        kafka_bootstrap,
        topic,
        feedback_topic,
        group,
        dlq,
        store,
        default_detectors(),
        sampled=Sampled(),  # type: ignore[arg-type]
        alerts=lambda event, findings: alerted.append(event.event_id),
    )
    commit, refused = consumer._consumer.commit, []

    def commit_once_refused(*args: object, **kwargs: object) -> object:
        if not refused:
            refused.append(True)
            raise CommitFailedError("the group rebalanced")
        return commit(*args, **kwargs)

    consumer._consumer.commit = commit_once_refused  # type: ignore[method-assign]
    consumer.start()
    try:
        assert wait_until(lambda: _committed(kafka_bootstrap, group, topic, 1) == 1, 30)
        assert wait_until(lambda: alerted == ["evt-2"] and sampled == ["evt-2"], 5), (alerted, sampled)
    finally:
        consumer.stop()
        store.close()
    assert refused == [True]


def test_a_record_too_large_to_dead_letter_goes_as_a_reference_and_blocks_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The dead-letter reason header pushes a record near Kafka's size limit over it; the monitor once
    retried such a batch forever."""
    topic, feedback_topic, dlq, group = _topics()
    ensure_topics(kafka_bootstrap, [topic, feedback_topic, dlq], partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    size = 1024 * 1024
    while True:  # garbage as near the producer's 1 MiB limit as it takes
        try:
            producer.send(topic, key=b"big", value=b"\xff" * size).get(timeout=30)
            break
        except MessageSizeTooLargeError:
            size -= 8
    producer.send(topic, _event(1, "No sources needed.").SerializeToString()).get(timeout=30)
    producer.close()
    store = FlagStore(tmp_path / "monitor.sqlite")
    consumer = MonitorConsumer(kafka_bootstrap, topic, feedback_topic, group, dlq, store, [])
    consumer.start()
    try:
        assert wait_until(lambda: _committed(kafka_bootstrap, group, topic, 1) == 2, 60)
    finally:
        consumer.stop()
    assert [i.interaction_id for i in store.list_interactions()] == ["evt-1"]
    [(value, reason)] = _dead_letters(kafka_bootstrap, dlq, 1)
    assert f"{topic}/0@0".encode() in value and f"{size:,} bytes".encode() in value
    assert reason.startswith("undecodable InteractionEvent") and "not copied" in reason
    store.close()
