"""Settings shared by every service; each service subclasses ``ServiceSettings`` with its own env prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from copilot.ratelimit import RateLimitSettings

# Kept beside the other build caches; the embedding module imports torch-free settings, not the reverse.
DEFAULT_EMBEDDING_CACHE_DIR = Path(".cache/models")


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
    # How clients authenticate to the customer's brokers; PLAINTEXT only suits loopback.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    # CA bundle that signed the brokers' certificates; the system store when unset.
    ssl_cafile: Path | None = None
    # Client certificate and key, for brokers that require mutual TLS.
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    interactions_topic: str = "copilot.interactions.v1"
    documents_topic: str = "copilot.documents.v1"
    ingest_requests_topic: str = "copilot.ingest-requests.v1"
    feedback_topic: str = "copilot.feedback.v1"
    # Where events wait while the broker is unreachable; replayed in order when it returns.
    spool_dir: Path = Path(".copilot/spool")
    # Largest the spool may grow, 0 for as large as the disk. A full spool makes calls UNAVAILABLE and
    # keeps what it holds; on Kubernetes it must stay below the volume's sizeLimit, since a pod whose
    # emptyDir outgrows that is evicted, spool and all.
    spool_max_bytes: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (self.sasl_mechanism and self.sasl_username):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism and sasl_username"
            )
        return self

    def client_options(self) -> dict[str, Any]:
        """kafka-python keyword arguments for the connection, besides the bootstrap servers."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        if self.security_protocol.endswith("SSL"):
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value = getattr(self, name)
                if value is not None:
                    options[name] = str(value)
        return options


class TelemetrySettings(BaseModel):
    exporter: Literal["none", "console", "otlp"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4317"
    # Serves the metrics at http://<prometheus_host>:<prometheus_port>/metrics for Prometheus to scrape;
    # 0 serves nothing. Independent of ``exporter``: OTLP and Prometheus can both be on.
    prometheus_port: int = Field(default=0, ge=0, le=65535)
    # Loopback unless opened on purpose: the endpoint has no authentication (the chart sets listenHost).
    prometheus_host: str = "127.0.0.1"


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
    # Largest request the gRPC server accepts; bigger ones get RESOURCE_EXHAUSTED before any work is done.
    # Ingest and the store host carry whole documents and raise it. Replies are bounded by the server.
    max_receive_message_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Calls in progress or queued beyond this get RESOURCE_EXHAUSTED instead of an ever longer queue.
    max_concurrent_rpcs: int = Field(default=256, ge=1)
    # Per caller (token subject); requests_per_second=0 turns it off.
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    # Keyed hash for pseudonymous user ids in events; rotate per deployment.
    pseudonym_key: SecretStr = SecretStr("dev-only-pseudonym-key")
    # Where the embedding model's ONNX export is kept (made on first start when missing; the image bakes it).
    embedding_cache_dir: Path = DEFAULT_EMBEDDING_CACHE_DIR


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
