"""Alerts for severe flags: a JSON POST to a generic webhook and a Block Kit message to a Slack incoming
webhook.

``Alerter.submit`` is called from the consumer and never blocks it: it drops what is below the minimum
severity or a duplicate, and queues the rest in a bounded queue (full: dropped and counted). One sender
thread posts them. Per destination a token bucket caps the rate (an incident that flags a thousand events
must not flood a channel; what the bucket refuses is counted, the review queue still has every flag), and
failures are retried with exponential backoff on 5xx, 429 (honouring Retry-After) and network errors,
never on other 4xx (a bad URL or a revoked webhook does not heal by retrying).

Duplicates: the same detector on the same interaction, or the same detector with the same finding
fingerprint (detector, reason, evidence) on any interaction, within ``dedup_window_s``. One leaked key
asked about by ten users is one alert.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from copilot.events.v1 import events_pb2
from services.monitor.detectors import Finding, Severity
from services.monitor.flagstore import flag_ids

log = logging.getLogger(__name__)

USER_AGENT = "copilot-monitor-alerts/1"


@dataclass(frozen=True)
class Alert:
    """One finding worth waking someone for, with what a responder needs to find it."""

    interaction_id: str
    finding: Finding
    user_id: str = ""
    question: str = ""
    # Link to the flag in the review page, when the monitor knows its public address.
    review_url: str = ""


class Destination(Protocol):
    name: str
    url: str

    def body(self, alert: Alert) -> dict[str, object]: ...


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _checked_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"alert destination must be an http(s) URL, got {url[:40]!r}")
    return url


class WebhookDestination:
    """A generic JSON webhook (an incident tool, a SIEM, a chat bridge)."""

    def __init__(self, url: str, name: str = "webhook") -> None:
        self.url = _checked_url(url)
        self.name = name

    def body(self, alert: Alert) -> dict[str, object]:
        finding = alert.finding
        return {
            "type": "copilot.monitor.flag",
            "interaction_id": alert.interaction_id,
            "detector": finding.detector,
            "severity": finding.severity.name,
            "reason": finding.reason,
            "evidence": list(finding.evidence),
            "fingerprint": finding.fingerprint,
            "user_id": alert.user_id,
            "question": _short(alert.question, 500),
            "review_url": alert.review_url,
        }


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters; everything else is shown as typed.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackDestination:
    """A Slack incoming webhook; the message is Block Kit with a plain-text fallback for notifications."""

    def __init__(self, url: str, name: str = "slack") -> None:
        self.url = _checked_url(url)
        self.name = name

    def body(self, alert: Alert) -> dict[str, object]:
        finding = alert.finding
        title = f"{finding.severity.name} flag: {finding.detector}"
        evidence = "\n".join(f"• `{_slack_escape(_short(e, 200))}`" for e in finding.evidence[:5])
        details = f"*{_slack_escape(finding.reason)}*"
        if evidence:
            details += f"\n{evidence}"
        if alert.question:
            details += f"\n>{_slack_escape(_short(alert.question, 300))}"
        context = f"interaction `{_slack_escape(alert.interaction_id)}`"
        if alert.user_id:
            context += f" · user `{_slack_escape(alert.user_id)}`"
        blocks: list[dict[str, object]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _short(title, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _short(details, 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ]
        if alert.review_url:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Review"},
                            "url": alert.review_url,
                        }
                    ],
                }
            )
        return {"text": f"{title}: {finding.reason}", "blocks": blocks}


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class _Deduplicator:
    """Remembers keys for ``window_s``; oldest first, so expiry is a walk from the front."""

    def __init__(self, window_s: float, clock: Callable[[], float]) -> None:
        self._window_s = window_s
        self._clock = clock
        self._seen: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def seen_recently(self, keys: Sequence[tuple[str, ...]]) -> bool:
        """True when any key was seen within the window; otherwise remembers all of them."""
        now = self._clock()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self._window_s:
                break
            del self._seen[oldest]
        if any(key in self._seen for key in keys):
            return True
        for key in keys:
            self._seen[key] = now
            self._seen.move_to_end(key)
        return False


class _PermanentFailure(Exception):
    pass


class Alerter:
    """See the module docstring. ``counts`` holds what happened to alerts: submitted, below_severity,
    duplicate, queue_full, and per destination ``sent:NAME``, ``rate_limited:NAME``, ``failed:NAME``,
    ``retried:NAME``."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        *,
        min_severity: Severity = Severity.HIGH,
        dedup_window_s: float = 600.0,
        rate_per_minute: float = 20.0,
        burst: int = 5,
        queue_size: int = 1_000,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._destinations = list(destinations)
        self.min_severity = min_severity
        self._dedup = _Deduplicator(dedup_window_s, clock)
        self._buckets = {d.name: TokenBucket(rate_per_minute / 60.0, burst, clock) for d in destinations}
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=queue_size)
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor-alerts", daemon=True)
        self.counts: Counter[str] = Counter()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Makes one more attempt at each queued alert (no more backoff waits) within ``timeout_s``, then
        stops."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._stopping.set()
        self._thread.join(timeout_s)

    def submit(
        self,
        interaction_id: str,
        findings: Iterable[Finding],
        *,
        user_id: str = "",
        question: str = "",
        review_url: str = "",
    ) -> int:
        """Queues an alert for each severe, new finding; returns how many were queued. Never blocks."""
        queued = 0
        for finding in findings:
            with self._lock:
                self.counts["submitted"] += 1
                if finding.severity < self.min_severity:
                    self.counts["below_severity"] += 1
                    continue
                keys = [
                    ("interaction", finding.detector, interaction_id),
                    ("fingerprint", finding.detector, finding.fingerprint),
                ]
                if self._dedup.seen_recently(keys):
                    self.counts["duplicate"] += 1
                    continue
            try:
                self._queue.put_nowait(Alert(interaction_id, finding, user_id, question, review_url))
            except queue.Full:
                with self._lock:
                    self.counts["queue_full"] += 1
                continue
            queued += 1
        return queued

    def snapshot(self) -> dict[str, int]:
        """A copy of ``counts``, for the metrics."""
        with self._lock:
            return dict(self.counts)

    def wait_idle(self, timeout_s: float) -> bool:
        """True once everything queued so far has been handled (sent, refused or failed)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] += 1

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            try:
                if alert is None:
                    return
                for destination in self._destinations:
                    if not self._buckets[destination.name].take():
                        self._count(f"rate_limited:{destination.name}")
                        continue
                    if self._deliver(destination, alert):
                        self._count(f"sent:{destination.name}")
                    else:
                        self._count(f"failed:{destination.name}")
            finally:
                self._queue.task_done()

    def _deliver(self, destination: Destination, alert: Alert) -> bool:
        data = json.dumps(destination.body(alert), ensure_ascii=False).encode()
        for attempt in range(1, self._max_attempts + 1):
            try:
                wait_s = self._post(destination.url, data)
            except _PermanentFailure as exc:
                log.warning("alert to %s refused: %s", destination.name, exc)
                return False
            if wait_s is None:
                return True
            if attempt == self._max_attempts:
                break
            self._count(f"retried:{destination.name}")
            delay = min(self._max_backoff_s, max(wait_s, self._backoff_s * 2 ** (attempt - 1)))
            if self._stopping.wait(delay):
                break
        log.warning("alert to %s failed after %d attempts", destination.name, self._max_attempts)
        return False

    def _post(self, url: str, data: bytes) -> float | None:
        """None when delivered; otherwise the seconds the server asked us to wait (0 when it did not say)."""
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                response.read()
                return None
        except urllib.error.HTTPError as exc:
            if exc.code == 429:
                return _retry_after(exc.headers.get("Retry-After"))
            if 500 <= exc.code < 600:
                return 0.0
            raise _PermanentFailure(f"HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            log.info("alert POST failed, will retry: %s", exc)
            return 0.0


class FlagAlerts:
    """Hands the findings stored on an interaction to the alerter, each with a link to its review item."""

    def __init__(
        self, alerter: Alerter, review_base_url: str = "", review_min_severity: Severity = Severity.LOW
    ) -> None:
        self.alerter = alerter
        self._base = review_base_url.rstrip("/")
        # Flags below it are stored without a review item, so there is nothing to link to.
        self._review_min_severity = review_min_severity

    def __call__(self, event: events_pb2.InteractionEvent, findings: Sequence[Finding]) -> int:
        """Queues alerts for the findings; returns how many were queued. Never blocks."""
        queued = 0
        ids = flag_ids(event.event_id, findings)
        for finding, flag_id in zip(findings, ids, strict=True):
            linked = self._base and finding.severity >= self._review_min_severity
            queued += self.alerter.submit(
                event.event_id,
                [finding],
                user_id=event.user_id,
                question=event.question,
                review_url=f"{self._base}/items/{flag_id}" if linked else "",
            )
        return queued


def _retry_after(header: str | None) -> float:
    try:
        return max(0.0, float(header)) if header else 0.0
    except ValueError:
        return 0.0
