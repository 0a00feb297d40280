"""Who is calling: Keycloak-style JWTs verified against the realm's JWKS, turned into a ``Principal``."""

from __future__ import annotations

import contextvars
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from pydantic import SecretStr

from copilot.errors import Unauthenticated
from copilot.settings import AuthSettings

# Asymmetric only: accepting HS256 would let anyone sign with the public key.
ALLOWED_ALGORITHMS = ["RS256", "ES256"]


@dataclass(frozen=True)
class Principal:
    subject: str
    username: str
    tenant: str
    email: str = ""
    groups: tuple[str, ...] = ()
    roles: frozenset[str] = field(default_factory=frozenset)
    token: str = field(default="", repr=False)

    def acl_principals(self) -> list[str]:
        """ACL entries this caller holds; chunks list the entries allowed to read them."""
        entries = {f"user:{self.username}", "everyone"}
        entries.update(f"group:{g}" for g in self.groups)
        return sorted(entries)

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def pseudonym(self, key: bytes) -> str:
        """Stable per user and deployment, but not reversible without the key."""
        return hmac.new(key, self.subject.encode(), hashlib.sha256).hexdigest()[:24]


_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def current_principal() -> Principal:
    principal = _current.get()
    if principal is None:
        raise Unauthenticated("this call needs a bearer token")
    return principal


def set_current_principal(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _current.set(principal)


def reset_current_principal(token: contextvars.Token[Principal | None]) -> None:
    _current.reset(token)


def principal_from_claims(claims: Mapping[str, Any], audience: str, token: str = "") -> Principal:
    roles = set(claims.get("realm_access", {}).get("roles", []))
    roles.update(claims.get("resource_access", {}).get(audience, {}).get("roles", []))
    # A group is its path without the leading slash ("/finance" is "finance"): a subgroup keeps its parent
    # ("/contractors/finance" is "contractors/finance"), or it would pass for a top-level group of its name.
    groups = tuple(sorted({str(g).strip("/") for g in claims.get("groups", []) if str(g).strip("/")}))
    username = str(claims.get("preferred_username") or claims["sub"])
    return Principal(
        subject=str(claims["sub"]),
        username=username,
        tenant=str(claims.get("tenant", "")),
        email=str(claims.get("email", "")),
        groups=groups,
        roles=frozenset(roles),
        token=token,
    )


class ApiKeyVerifier:
    """For internal hosts that have no users, only callers holding the deployment's key (the embedded
    store host, as a Qdrant server is guarded by its API key)."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key.get_secret_value().encode()
        if len(self._key) < 16:
            raise ValueError("the API key must be at least 16 characters")

    def verify(self, token: str) -> Principal:
        if not hmac.compare_digest(token.encode(), self._key):
            raise Unauthenticated("wrong API key")
        return Principal(subject="service", username="service", tenant="")


class TokenVerifier:
    """Checks signature, issuer, audience, expiry, not-before; an unknown key id refetches the JWKS once."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._jwks = jwt.PyJWKClient(
            settings.resolved_jwks_url(), cache_keys=True, lifespan=settings.jwks_cache_seconds, timeout=5
        )

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} is not accepted")
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise Unauthenticated(f"cannot fetch signing keys from the identity provider: {exc}") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"token signed with an unknown key: {exc}") from exc
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALLOWED_ALGORITHMS,
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired; sign in again") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated(f"token is not meant for audience {self._settings.audience!r}") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthenticated(f"token was not issued by {self._settings.issuer}") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        return principal_from_claims(claims, self._settings.audience, token)
