"""OpenTelemetry metrics of the monitor: events consumed, flags per detector, processing delay, consumer lag,
review queue size, what the sampled tier inspected or dropped, and what became of alerts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation


class MonitorMetrics:
    def __init__(self, meter: Meter | None = None) -> None:
        meter = meter or metrics.get_meter("copilot-monitor")
        self._events = meter.create_counter(
            "copilot.monitor.events_consumed",
            unit="{event}",
            description="Kafka records handled, by topic and outcome (stored, duplicate, dead_lettered)",
        )
        self._flags = meter.create_counter(
            "copilot.monitor.flags_raised", unit="{flag}", description="Flags stored, by detector"
        )
        self._delay = meter.create_histogram(
            "copilot.monitor.event_delay",
            unit="s",
            description="From when an interaction happened to when its flags were stored",
        )
        self._lock = threading.Lock()
        self._lag: dict[tuple[str, int], int] = {}
        self._queue_size: Callable[[], int] | None = None
        meter.create_observable_gauge(
            "copilot.monitor.consumer_lag",
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Records on the broker the consumer has not read yet, by topic and partition",
        )
        meter.create_observable_gauge(
            "copilot.monitor.review_queue_size",
            callbacks=[self._observe_queue],
            unit="{item}",
            description="Review items not yet resolved",
        )
        # Counted by the sampled runner and the alerter themselves, read when metrics are collected.
        self._sampled: Callable[[], Mapping[str, int]] | None = None
        self._alerts: Callable[[], Mapping[str, int]] | None = None
        meter.create_observable_counter(
            "copilot.monitor.sampled_events",
            callbacks=[self._observe_sampled],
            unit="{event}",
            description="Interactions the sampled tier took (submitted), inspected, or dropped when behind",
        )
        meter.create_observable_counter(
            "copilot.monitor.alerts",
            callbacks=[self._observe_alerts],
            unit="{alert}",
            description=(
                "Alerts by outcome (submitted, below_severity, duplicate, queue_full; per destination sent, "
                "rate_limited, failed, retried)"
            ),
        )

    def event(self, topic: str, outcome: str, count: int = 1) -> None:
        self._events.add(count, {"topic": topic, "outcome": outcome})

    def flags(self, detectors: Sequence[str]) -> None:
        for detector in detectors:
            self._flags.add(1, {"detector": detector})

    def delay(self, seconds: float) -> None:
        self._delay.record(max(seconds, 0.0))

    def lag(self, topic: str, partition: int, messages: int) -> None:
        with self._lock:
            self._lag[(topic, partition)] = messages

    def watch_queue(self, size: Callable[[], int]) -> None:
        self._queue_size = size

    def watch_sampled(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """``counts`` returns the sampled runner's running totals by outcome."""
        self._sampled = counts

    def watch_alerts(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """``counts`` returns the alerter's running totals, keyed "outcome" or "outcome:destination"."""
        self._alerts = counts

    def _observe_lag(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            lags = dict(self._lag)
        return [Observation(n, {"topic": t, "partition": p}) for (t, p), n in lags.items()]

    def _observe_queue(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [] if self._queue_size is None else [Observation(self._queue_size())]

    def _observe_sampled(self, _options: CallbackOptions) -> Iterable[Observation]:
        counts = {} if self._sampled is None else self._sampled()
        return [Observation(n, {"outcome": outcome}) for outcome, n in counts.items()]

    def _observe_alerts(self, _options: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for key, n in ({} if self._alerts is None else self._alerts()).items():
            outcome, _, destination = key.partition(":")
            attributes = (
                {"outcome": outcome, "destination": destination} if destination else {"outcome": outcome}
            )
            observations.append(Observation(n, attributes))
        return observations
