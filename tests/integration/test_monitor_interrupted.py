"""An answer the caller cut off (``InteractionEvent.interrupted``), from the real broker through the consumer
and the real detectors to the flag and review RPCs and the review page on loopback: shown and filterable as
cut off, its unfinished last sentence not judged as a claim, a leak in it still flagged. On SQLite here; the
PostgreSQL tests run the same check."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from kafka import KafkaProducer

from copilot.common.v1 import common_pb2
from copilot.devissuer import DevIssuer
from copilot.events.v1 import events_pb2
from copilot.grpc_client import bearer, open_channel
from copilot.kafka import ensure_topics
from copilot.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from copilot.settings import AuthSettings
from services.monitor.consumer import MonitorConsumer
from services.monitor.detectors import default_detectors
from services.monitor.flagstore import FlagStore
from services.monitor.review import ReviewPolicy
from tests.integration.kafka_checks import wait_until
from tests.integration.monitor_standins import serve_monitor, serve_review_page
from tests.integration.test_monitor_consumer import _committed, _topics

BADGE = "interrupted by the caller: the answer was cut off"
PASSAGE = common_pb2.Passage(
    chunk_id="c1", title="Travel policy", access_reason="everyone", text="The travel budget is 412,000 USD."
)
# Cut off mid-sentence: the unfinished sentence cites a source that does not support it, and leaks a key.
ANSWER = (
    "The travel budget is 412,000 USD [1]. The deploy key AKIAIOSFODNN7EXAMPLE unlocks unicorn rides [1] for"
)


def _event(event_id: str, interrupted: bool) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(
        event_id=event_id,
        user_id="u1",
        question="What is the travel budget?",
        answer=ANSWER,
        passages=[PASSAGE],
        cited_sources=[1],
        model="test-model",
        interrupted=interrupted,
    )


def check_interrupted_answers(
    target: Path | str, kafka_bootstrap: str, auth_settings: AuthSettings, issuer: DevIssuer
) -> None:
    """The same answer consumed twice, once cut off by the caller and once finished."""
    topic, feedback_topic, dlq, group = _topics()
    ensure_topics(kafka_bootstrap, [topic, feedback_topic, dlq], partitions=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for interaction in (_event("cut", True), _event("whole", False)):
        producer.send(topic, interaction.SerializeToString())
    producer.flush()
    producer.close()
    store = FlagStore(target, ReviewPolicy(labels_required=1))
    consumer = MonitorConsumer(kafka_bootstrap, topic, feedback_topic, group, dlq, store, default_detectors())
    consumer.start()
    try:
        assert wait_until(lambda: _committed(kafka_bootstrap, group, topic, 1) == 2)
    finally:
        consumer.stop()
    flagged = {i: sorted(f.detector for f in store.list_flags(interaction_id=i)) for i in ("cut", "whole")}
    assert flagged == {"cut": ["secret"], "whole": ["secret", "ungrounded"]}

    server = serve_monitor(store, auth_settings)
    web = serve_review_page(store, auth_settings)
    token = issuer.mint("ops")
    try:
        rpc = monitor_pb2_grpc.MonitorServiceStub(open_channel(f"127.0.0.1:{server.port}"))
        listed = rpc.ListInteractions(monitor_pb2.ListInteractionsRequest(), metadata=bearer(token))
        assert {i.interaction_id: i.interrupted for i in listed.interactions} == {"cut": True, "whole": False}
        flags = rpc.ListFlags(monitor_pb2.ListFlagsRequest(), metadata=bearer(token)).flags
        assert sorted((f.interaction_id, f.detector, f.interrupted) for f in flags) == [
            ("cut", "secret", True),
            ("whole", "secret", False),
            ("whole", "ungrounded", False),
        ]
        items = rpc.ListReviewItems(monitor_pb2.ListReviewItemsRequest(), metadata=bearer(token)).items
        assert sorted((i.interaction_id, i.detector, i.interrupted) for i in items) == [
            ("cut", "secret", True),
            ("whole", "secret", False),
            ("whole", "ungrounded", False),
        ]
        only = rpc.ListReviewItems(
            monitor_pb2.ListReviewItemsRequest(interrupted_only=True), metadata=bearer(token)
        )
        [cut] = only.items
        assert (only.total, cut.interaction_id) == (1, "cut")
        got = rpc.GetReviewItem(monitor_pb2.GetReviewItemRequest(item_id=cut.item_id), metadata=bearer(token))
        assert got.item.interrupted and got.item.answer == ANSWER
        [whole] = [i for i in items if (i.interaction_id, i.detector) == ("whole", "secret")]

        with httpx.Client(
            base_url=web.url.rstrip("/"), headers={"authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            cut_page, whole_page = client.get(f"/items/{cut.item_id}"), client.get(f"/items/{whole.item_id}")
            queue = client.get("/?interrupted=1")
        assert (cut_page.status_code, whole_page.status_code, queue.status_code) == (200, 200, 200)
        assert BADGE in cut_page.text and BADGE not in whole_page.text
        assert set(re.findall(r'data-item-id="([^"]+)"', queue.text)) == {cut.item_id}
        assert 'name="interrupted" value="1" checked' in queue.text
    finally:
        web.stop()
        server.stop(1)
        store.close()


def test_an_interrupted_answer_is_shown_and_judged_as_cut_off(
    kafka_bootstrap: str, auth_settings: AuthSettings, issuer: DevIssuer, tmp_path: Path
) -> None:
    check_interrupted_answers(tmp_path / "monitor.sqlite", kafka_bootstrap, auth_settings, issuer)
