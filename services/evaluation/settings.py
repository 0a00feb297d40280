from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from copilot.settings import DEFAULT_EMBEDDING_CACHE_DIR


class EvalSettings(BaseSettings):
    """Where the evaluation finds the copilot. Left empty, everything comes from the local stack that
    `copilot up` started; a cluster job (the Helm pre-upgrade gate) sets the targets, the issuer and a
    credentials file mounted from a secret."""

    model_config = SettingsConfigDict(env_prefix="COPILOT_EVAL_", env_nested_delimiter="__", extra="ignore")

    retrieval_target: str = ""
    generation_target: str = ""
    monitor_target: str = ""
    ingest_target: str = ""
    # OIDC issuer (a Keycloak realm URL) that signs the evaluation users in with the password grant.
    issuer: str = ""
    client_id: str = "copilot-cli"
    client_secret: SecretStr | None = None
    # JSON list of {"username", "password"} for the users the golden sets name; default: the stack's users.
    credentials_file: Path | None = None
    # Plants the red-team fixtures (needs copilot-ingest) and sends samples for human review (needs
    # copilot-reviewer or copilot-evaluator).
    operator_user: str = "ops"
    answer_timeout_s: float = 900
    search_timeout_s: float = 60
    reports_dir: Path = Path(".copilot/eval")
    # The embedding model's ONNX export, for answer similarity (the image bakes one).
    embedding_cache_dir: Path = DEFAULT_EMBEDDING_CACHE_DIR
