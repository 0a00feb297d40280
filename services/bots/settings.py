from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from copilot.settings import ServiceSettings


class KeycloakClientSettings(BaseModel):
    """The bot's confidential client in the realm. Its service account needs realm-management's
    ``view-users`` (email lookups) and the impersonation permission for token exchange."""

    # Keycloak's root URL (not the realm's), e.g. https://sso.example.com/
    server_url: str = "http://127.0.0.1:8180/"
    realm: str = "copilot"
    client_id: str = "copilot-bot"
    client_secret: SecretStr = SecretStr("")
    # Audience of the user tokens the bot asks for: the services' audience.
    audience: str = "copilot"
    timeout_s: float = 10.0


class SlackSettings(BaseModel):
    enabled: bool = False
    # "http": Slack posts to /slack/events; "socket": the bot dials out over Socket Mode (no public URL).
    mode: Literal["http", "socket"] = "http"
    signing_secret: SecretStr = SecretStr("")
    bot_token: SecretStr = SecretStr("")
    app_token: SecretStr = SecretStr("")
    # Slack's Web API; tests point it at a local recorder.
    api_url: str = "https://slack.com/api/"
    # At most one chat.update per this many seconds while an answer streams (Slack rate-limits updates).
    update_interval_s: float = 1.0


class TeamsSettings(BaseModel):
    enabled: bool = False
    app_id: str = ""
    app_password: SecretStr = SecretStr("")
    # Single-tenant bots name their Azure AD tenant; empty for multi-tenant.
    app_tenant_id: str = ""
    # Azure AD tenants whose users may ask (a single-tenant bot's own counts). Users are matched to
    # Keycloak by the email Teams reports, which the tenant's administrators set: a multi-tenant bot
    # installed elsewhere would otherwise take a stranger's say-so for who they are.
    allowed_tenant_ids: list[str] = Field(default_factory=list)
    # Where the Bot Framework channel's signing keys are published, and the issuer of its tokens.
    openid_metadata_url: str = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    token_issuer: str = "https://api.botframework.com"
    oauth_scope: str = "https://api.botframework.com"
    login_url: str = "https://login.microsoftonline.com/botframework.com"
    update_interval_s: float = 1.0

    def trusted_tenants(self) -> frozenset[str]:
        return frozenset(t for t in (*self.allowed_tenant_ids, self.app_tenant_id) if t)

    @model_validator(mode="after")
    def _tenants_named(self) -> TeamsSettings:
        if self.enabled and not self.trusted_tenants():
            raise ValueError(
                "teams.allowed_tenant_ids must name the Azure AD tenants whose users may ask (a "
                "single-tenant bot's app_tenant_id counts): their administrators set the emails the bot "
                "matches users by"
            )
        return self


class BotsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COPILOT_BOTS_", env_nested_delimiter="__", extra="ignore")

    # gRPC health port, like every service.
    port: int = 50055
    http_host: str = "127.0.0.1"
    http_port: int = 3978
    generation_target: str = "127.0.0.1:50053"
    # Longest a single answer may take before the user is told it timed out.
    deadline_s: float = 120.0
    keycloak: KeycloakClientSettings = Field(default_factory=KeycloakClientSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    teams: TeamsSettings = Field(default_factory=TeamsSettings)
    feedback_topic: str = "copilot.feedback.v1"
    # Per-channel configuration, thread -> conversation map and seen event ids.
    database: Path = Path(".copilot/data/bots.sqlite")
    # How long a resolved identity (chat user -> Keycloak user and groups) is trusted before asking again;
    # unknown users are asked about again sooner, so newly given access works quickly.
    identity_ttl_s: float = 300.0
    unknown_identity_ttl_s: float = 30.0
    # A channel with more members than this is shown no document; the asker is answered privately.
    max_audience_members: int = 500
    # Follow-ups more than this long after the last answer start a new conversation.
    conversation_idle_s: float = 3600.0
    # Where people ask for access; shown to users the bot cannot match to a Keycloak account.
    access_help: str = (
        "Ask your IT service desk for a copilot account with the same email as your chat account."
    )
    # Turns a document's uri into a link; "{uri}" is replaced. Empty: http(s) uris link as they are.
    document_link_template: str = ""
