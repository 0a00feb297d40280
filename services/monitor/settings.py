from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings
from services.monitor.detectors import Severity
from services.monitor.review import ReviewPolicy


class ReviewSettings(BaseModel):
    """The review queue: who reviews what, how many labels an item needs, and when it is due."""

    labels_per_item: int = Field(default=2, ge=1)
    # Usernames assigned round robin; empty leaves items for anyone with the reviewer role to claim.
    reviewers: list[str] = Field(default_factory=list)
    # Detector name ("evaluation" for evaluation tasks) to its own reviewers, instead of the shared list.
    reviewers_by_detector: dict[str, list[str]] = Field(default_factory=dict)
    sla_hours_high: float = 4
    sla_hours_medium: float = 24
    sla_hours_low: float = 72
    sla_hours_evaluation: float = 72
    # Flags below this severity are stored but not queued for review.
    min_severity: Literal["low", "medium", "high"] = "low"
    # Who may decide escalated items.
    adjudicator_role: str = "copilot-reviewer"
    # Who may submit evaluation samples besides reviewers.
    evaluator_role: str = "copilot-evaluator"
    # Bootstrap resamples behind the agreement intervals on the review page.
    agreement_resamples: int = Field(default=1000, ge=1)

    def policy(self) -> ReviewPolicy:
        return ReviewPolicy(
            labels_required=self.labels_per_item,
            reviewers=tuple(self.reviewers),
            reviewers_by_detector={k: tuple(v) for k, v in self.reviewers_by_detector.items()},
            sla={
                Severity.HIGH: timedelta(hours=self.sla_hours_high),
                Severity.MEDIUM: timedelta(hours=self.sla_hours_medium),
                Severity.LOW: timedelta(hours=self.sla_hours_low),
            },
            evaluation_sla=timedelta(hours=self.sla_hours_evaluation),
            min_severity=Severity[self.min_severity.upper()],
        )


class MonitorSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="COPILOT_MONITOR_", env_nested_delimiter="__", extra="ignore"
    )

    port: int = 50054
    # SQLite file used when database_url is empty.
    database: Path = Path(".copilot/data/monitor.sqlite")
    # A SQLAlchemy URL for production, such as postgresql+psycopg://monitor:PASSWORD@db:5432/monitor.
    database_url: SecretStr = SecretStr("")
    consumer_group: str = "copilot-monitor"
    dead_letter_topic: str = "copilot.interactions.dlq.v1"
    # Role a caller needs to read flags and interactions and to review.
    reviewer_role: str = "copilot-reviewer"
    latency_ceiling_ms: float = 60_000
    # The review web page; port 0 turns it off.
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # Set when the page is served over HTTPS, so the session cookie never travels in clear text.
    cookie_secure: bool = False
    review: ReviewSettings = Field(default_factory=ReviewSettings)

    def database_target(self) -> str:
        """The URL to open: database_url when set, else the SQLite file."""
        return self.database_url.get_secret_value() or str(self.database)
