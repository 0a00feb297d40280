from __future__ import annotations

import pytest
from pydantic import ValidationError

from copilot.settings import TelemetrySettings
from services.retrieval.settings import RetrievalSettings


def test_prometheus_endpoint_is_off_by_default_and_on_loopback_when_on() -> None:
    settings = TelemetrySettings()
    assert settings.prometheus_port == 0
    assert settings.prometheus_host == "127.0.0.1"


def test_prometheus_port_and_host_come_from_the_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPILOT_RETRIEVAL_TELEMETRY__PROMETHEUS_PORT", "9464")
    monkeypatch.setenv("COPILOT_RETRIEVAL_TELEMETRY__PROMETHEUS_HOST", "0.0.0.0")
    telemetry = RetrievalSettings().telemetry
    assert (telemetry.prometheus_port, telemetry.prometheus_host) == (9464, "0.0.0.0")
    assert telemetry.exporter == "none"  # the push exporter is a separate choice


@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_out_of_range_is_refused(port: int) -> None:
    with pytest.raises(ValidationError, match="prometheus_port"):
        TelemetrySettings(prometheus_port=port)
