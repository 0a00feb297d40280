from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
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
    # Tenant to its own reviewers. It wins over reviewers_by_detector: a tenant's flags are assigned to the
    # reviewers it names, whichever detector raised them. Assignment, not access control: anyone with the
    # reviewer role can still list and open every item.
    reviewers_by_tenant: dict[str, list[str]] = Field(default_factory=dict)
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
            reviewers_by_tenant={k: tuple(v) for k, v in self.reviewers_by_tenant.items()},
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
    # Retrieval's realm role -> ACL groups mapping (COPILOT_RETRIEVAL_ROLE_GROUPS): the ACL-anomaly check
    # counts the groups a caller's roles grant, as the search did.
    role_groups: dict[str, list[str]] = Field(default_factory=dict)
    # The review web page; port 0 turns it off.
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # Set when the page is served over HTTPS, so the session cookie never travels in clear text.
    cookie_secure: bool = False
    review: ReviewSettings = Field(default_factory=ReviewSettings)

    # Severe flags are posted to these as they are stored; unset ones are off.
    alert_webhook_url: SecretStr | None = None
    alert_slack_webhook_url: SecretStr | None = None
    alert_min_severity: Literal["LOW", "MEDIUM", "HIGH"] = "HIGH"
    # Per destination: an incident that flags a thousand events must not flood a channel.
    alert_rate_per_minute: float = Field(default=20, gt=0)
    alert_burst: int = Field(default=5, ge=1)
    # The same finding (on one interaction, or the same evidence anywhere) alerts once in this window.
    alert_dedup_window_s: float = Field(default=600, ge=0)
    # The review page's address as reviewers reach it (https://review.example.com), for links in alerts;
    # empty leaves the links out.
    review_base_url: str = ""

    # The sampled tier: fractions of interactions the expensive detectors inspect; 0 turns one off.
    toxicity_classifier_sample_rate: float = Field(default=0.1, ge=0, le=1)
    drift_sample_rate: float = Field(default=0.2, ge=0, le=1)
    # Sampled questions in the drift baseline and in each window compared with it.
    drift_baseline_size: int = Field(default=300, ge=20)
    drift_window_size: int = Field(default=300, ge=20)
    # Interactions in the retrieval-decay baseline and in each window compared with it.
    retrieval_decay_baseline_size: int = Field(default=500, ge=20)
    retrieval_decay_window_size: int = Field(default=500, ge=20)

    @field_validator("alert_min_severity", mode="before")
    @classmethod
    def _upper_severity(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("alert_webhook_url", "alert_slack_webhook_url", mode="after")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("review_base_url", mode="after")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL or empty")
        return value.rstrip("/")

    def alert_severity(self) -> Severity:
        return Severity[self.alert_min_severity]

    def database_target(self) -> str:
        """The URL to open: database_url when set, else the SQLite file."""
        return self.database_url.get_secret_value() or str(self.database)
