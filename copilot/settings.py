"""Settings shared by every service; each service subclasses ``ServiceSettings`` with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseModel):
    """Where tokens come from and what they must say; matches a Keycloak realm."""

    issuer: str = "http://127.0.0.1:8180/realms/copilot"
    audience: str = "copilot"
    # JWKS URL; empty means the Keycloak default under the issuer.
    jwks_url: str = ""
    jwks_cache_seconds: int = 300
    leeway_seconds: int = 10

    def resolved_jwks_url(self) -> str:
        return self.jwks_url or f"{self.issuer}/protocol/openid-connect/certs"


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    interactions_topic: str = "copilot.interactions.v1"
    documents_topic: str = "copilot.documents.v1"
    ingest_requests_topic: str = "copilot.ingest-requests.v1"
    feedback_topic: str = "copilot.feedback.v1"
    # Where events wait while the broker is unreachable; replayed in order when it returns.
    spool_dir: Path = Path(".copilot/spool")


class TelemetrySettings(BaseModel):
    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4317"


class ServiceSettings(BaseSettings):
    """Read once at start-up by ``server.py`` and passed down; nothing else reads the environment."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 0
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    max_workers: int = 8
    auth: AuthSettings = Field(default_factory=AuthSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    # Keyed hash for pseudonymous user ids in events; rotate per deployment.
    pseudonym_key: SecretStr = SecretStr("dev-only-pseudonym-key")


class StoreSettings(BaseModel):
    """Where chunks live. ``embedded``: the local store host (Qdrant's engine in one process) over gRPC;
    ``qdrant``: a Qdrant server through qdrant-client (production)."""

    kind: Literal["embedded", "qdrant"] = "embedded"
    embedded_target: str = "127.0.0.1:50050"
    # Shared with the store host; the launcher makes one per stack.
    embedded_api_key: SecretStr = SecretStr("")
    qdrant_url: str = "http://127.0.0.1:6333"
    qdrant_api_key: SecretStr | None = None
    collection: str = "copilot_chunks"
