from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="COPILOT_MONITOR_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50054
    database: Path = Path(".copilot/data/monitor.sqlite")
    consumer_group: str = "copilot-monitor"
    dead_letter_topic: str = "copilot.interactions.dlq.v1"
    # Role a caller needs to read flags and interactions.
    reviewer_role: str = "copilot-reviewer"
    latency_ceiling_ms: float = 60_000
