"""Alerts against a real HTTP server on loopback that records what it receives (the Slack and incident-tool
servers themselves cannot be reached from here; the requests are the same)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from copilot.events.v1 import events_pb2
from services.monitor.alerts import (
    Alerter,
    Destination,
    FlagAlerts,
    SlackDestination,
    TokenBucket,
    WebhookDestination,
)
from services.monitor.detectors import Finding, Severity
from services.monitor.flagstore import FlagStore
from services.monitor.metrics import MonitorMetrics
from services.monitor.review import ReviewQueue

KEY_LEAK = Finding("secret", Severity.HIGH, "answer contains an AWS access key id", ("AKIA****MPLE",))
OTHER_LEAK = Finding("secret", Severity.HIGH, "answer contains an AWS access key id", ("AKIA****ABCD",))
SLOW = Finding("latency", Severity.LOW, "answer took 70000 ms, above the 60000 ms ceiling", ())


@dataclass
class Recorder:
    """What the server received per path, and the statuses it answers with (then 200 once they run out)."""

    received: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    headers: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str) -> int:
        with self.lock:
            return len(self.received.get(path, []))


@pytest.fixture
def server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(recorder.delay_s)
            with recorder.lock:
                recorder.received.setdefault(self.path, []).append(body)
                recorder.headers.setdefault(self.path, []).append(dict(self.headers))
                script = recorder.statuses.get(self.path, [])
                status = script.pop(0) if script else 200
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", recorder
    httpd.shutdown()
    httpd.server_close()


def _alerter(base: str, **options: Any) -> Alerter:
    defaults: dict[str, Any] = {"backoff_s": 0.01, "timeout_s": 2.0}
    destinations: list[Destination] = [WebhookDestination(f"{base}/hook"), SlackDestination(f"{base}/slack")]
    alerter = Alerter(destinations, **(defaults | options))
    alerter.start()
    return alerter


def test_severe_flags_reach_the_webhook_and_slack(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    alerter = _alerter(base)
    queued = alerter.submit(
        "evt-1",
        [KEY_LEAK, SLOW],
        user_id="u-42",
        question="What is the <deploy> key?",
        review_url="http://r/1",
    )
    assert queued == 1, "the LOW latency flag is below the alert threshold"
    assert alerter.wait_idle(10)
    alerter.stop()

    [hook] = recorder.received["/hook"]
    assert hook == {
        "type": "copilot.monitor.flag",
        "interaction_id": "evt-1",
        "detector": "secret",
        "severity": "HIGH",
        "reason": "answer contains an AWS access key id",
        "evidence": ["AKIA****MPLE"],
        "fingerprint": KEY_LEAK.fingerprint,
        "user_id": "u-42",
        "question": "What is the <deploy> key?",
        "review_url": "http://r/1",
    }
    assert recorder.headers["/hook"][0]["Content-Type"] == "application/json"
    [slack] = recorder.received["/slack"]
    assert slack["text"] == "HIGH flag: secret: answer contains an AWS access key id"
    blocks = slack["blocks"]
    assert isinstance(blocks, list)
    assert [b["type"] for b in blocks] == ["header", "section", "context", "actions"]
    section = blocks[1]["text"]["text"]
    assert "*answer contains an AWS access key id*" in section and "`AKIA****MPLE`" in section
    assert "&lt;deploy&gt;" in section, "Slack control characters are escaped"
    assert blocks[3]["elements"][0]["url"] == "http://r/1"
    assert alerter.counts["sent:webhook"] == 1 and alerter.counts["sent:slack"] == 1
    assert alerter.counts["below_severity"] == 1


def test_duplicates_by_interaction_and_by_fingerprint_are_sent_once(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    alerter = _alerter(base)
    alerter.submit("evt-1", [KEY_LEAK])
    alerter.submit("evt-1", [KEY_LEAK])  # redelivered event
    alerter.submit("evt-2", [KEY_LEAK])  # same leaked key asked about by someone else
    alerter.submit("evt-3", [OTHER_LEAK])  # another key: a new alert
    assert alerter.wait_idle(10)
    alerter.stop()
    assert [b["evidence"] for b in recorder.received["/hook"]] == [["AKIA****MPLE"], ["AKIA****ABCD"]]
    assert alerter.counts["duplicate"] == 2


def test_duplicates_are_forgotten_after_the_window(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    alerter = _alerter(base, dedup_window_s=0.2)
    alerter.submit("evt-1", [KEY_LEAK])
    time.sleep(0.3)
    alerter.submit("evt-2", [KEY_LEAK])
    assert alerter.wait_idle(10)
    alerter.stop()
    assert recorder.count("/hook") == 2


def test_token_bucket_limits_each_destination(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    alerter = _alerter(base, burst=3, rate_per_minute=0.5)
    for i in range(10):
        alerter.submit(f"evt-{i}", [Finding("secret", Severity.HIGH, "leak", (f"key-{i}",))])
    assert alerter.wait_idle(10)
    alerter.stop()
    assert recorder.count("/hook") == 3 and recorder.count("/slack") == 3
    assert alerter.counts["rate_limited:webhook"] == 7 and alerter.counts["rate_limited:slack"] == 7


def test_token_bucket_refills_over_time() -> None:
    now = [0.0]
    bucket = TokenBucket(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] = 0.5
    assert [bucket.take() for _ in range(2)] == [True, False]
    now[0] = 100.0
    assert [bucket.take() for _ in range(3)] == [True, True, False], "never more than the burst saved up"


def test_server_errors_are_retried_with_backoff_and_client_errors_are_not(
    server: tuple[str, Recorder],
) -> None:
    base, recorder = server
    recorder.statuses["/hook"] = [503, 500, 200]
    recorder.statuses["/slack"] = [404]
    alerter = _alerter(base)
    alerter.submit("evt-1", [KEY_LEAK])
    assert alerter.wait_idle(10)
    alerter.stop()
    assert recorder.count("/hook") == 3
    assert alerter.counts["sent:webhook"] == 1 and alerter.counts["retried:webhook"] == 2
    assert recorder.count("/slack") == 1, "a 404 is not retried"
    assert alerter.counts["failed:slack"] == 1


def test_rate_limited_by_the_server_is_retried(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    recorder.statuses["/hook"] = [429, 200]
    alerter = _alerter(base)
    alerter.submit("evt-1", [KEY_LEAK])
    assert alerter.wait_idle(10)
    alerter.stop()
    assert recorder.count("/hook") == 2 and alerter.counts["sent:webhook"] == 1


def test_gives_up_after_max_attempts(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    recorder.statuses["/hook"] = [500] * 10
    alerter = _alerter(base, max_attempts=3)
    alerter.submit("evt-1", [KEY_LEAK])
    assert alerter.wait_idle(10)
    alerter.stop()
    assert recorder.count("/hook") == 3 and alerter.counts["failed:webhook"] == 1


def test_unreachable_destination_fails_without_blocking_the_caller() -> None:
    alerter = Alerter([WebhookDestination("http://127.0.0.1:9/hook")], backoff_s=0.01, max_attempts=2)
    alerter.start()
    started = time.monotonic()
    alerter.submit("evt-1", [KEY_LEAK])
    assert time.monotonic() - started < 0.1
    assert alerter.wait_idle(10)
    alerter.stop()
    assert alerter.counts["failed:webhook"] == 1 and alerter.counts["retried:webhook"] == 1


def test_submit_never_blocks_and_counts_what_a_full_queue_drops(server: tuple[str, Recorder]) -> None:
    base, recorder = server
    recorder.delay_s = 0.5
    alerter = _alerter(base, queue_size=2, burst=100)
    started = time.monotonic()
    for i in range(20):
        alerter.submit(f"evt-{i}", [Finding("secret", Severity.HIGH, "leak", (f"key-{i}",))])
    assert time.monotonic() - started < 0.2, "the consumer's thread must not wait for the network"
    assert alerter.counts["queue_full"] >= 17
    alerter.stop(timeout_s=10)


def test_destinations_need_http_urls() -> None:
    with pytest.raises(ValueError):
        WebhookDestination("file:///etc/passwd")
    with pytest.raises(ValueError):
        SlackDestination("hooks.slack.com/services/T/B/x")


def test_stop_without_start_returns_at_once() -> None:
    Alerter([WebhookDestination("http://127.0.0.1:9/hook")]).stop(timeout_s=0.1)


def test_flag_alerts_link_each_flag_to_its_review_item_and_count_in_metrics(
    server: tuple[str, Recorder], tmp_path: Path
) -> None:
    base, recorder = server
    store = FlagStore(tmp_path / "monitor.sqlite")
    event = events_pb2.InteractionEvent(event_id="evt-9", user_id="u-9", question="Deploy key?", answer="a")
    findings = [SLOW, KEY_LEAK, OTHER_LEAK]
    store.record(event, findings)
    reader = InMemoryMetricReader()
    metrics = MonitorMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    alerter = _alerter(base)
    metrics.watch_alerts(alerter.snapshot)
    alerts = FlagAlerts(alerter, "https://review.example.com/")
    # The second leak on the same interaction is a duplicate by interaction.
    assert alerts(event, findings) == 1
    assert alerter.wait_idle(10)
    alerter.stop()
    [hook] = recorder.received["/hook"]
    [flag] = [f for f in store.list_flags() if f.detector == "secret" and f.evidence == KEY_LEAK.evidence]
    assert hook["review_url"] == f"https://review.example.com/items/{flag.flag_id}"
    assert ReviewQueue(store).get(flag.flag_id).interaction_id == "evt-9"
    [points] = [
        metric.data.data_points
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "copilot.monitor.alerts"
    ]
    counted = {tuple(sorted(p.attributes.items())): p.value for p in points}
    assert counted == {
        (("outcome", "submitted"),): 3,
        (("outcome", "below_severity"),): 1,
        (("outcome", "duplicate"),): 1,
        (("destination", "webhook"), ("outcome", "sent")): 1,
        (("destination", "slack"), ("outcome", "sent")): 1,
    }
    store.close()
