"""Who a chat user is in Keycloak, and a token to ask as them.

Chat users are matched to Keycloak users by email (the chat platform verifies it, Keycloak must mark it
verified too). The bot never asks with its own rights: it trades its service-account token for one of the
user (Keycloak's impersonation token exchange), so every question runs with that user's permissions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from keycloak import KeycloakAdmin, KeycloakOpenID
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakConnectionError, KeycloakError

from copilot.errors import DependencyUnavailable, PermissionDenied
from services.bots.settings import KeycloakClientSettings

log = logging.getLogger(__name__)

#: The Keycloak user attribute the realm maps to the tokens' ``tenant`` claim
#: (helm/copilot/files/keycloak-realm.json); the services read a caller's tenant from that claim.
TENANT_ATTRIBUTE = "tenant"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a URN, not a secret)
# Tokens are renewed this long before they expire, so none expires on its way to the service.
TOKEN_MARGIN_S = 60.0


@dataclass(frozen=True)
class KeycloakUser:
    id: str
    username: str
    email: str
    groups: tuple[str, ...] = ()
    # Empty when the user has none: such a user reads no document, and shares an organisation with no one.
    tenant: str = ""

    def acl_entries(self) -> list[str]:
        """The ACL entries this user holds, as the services derive them from the user's token. They mean
        something only within the user's tenant: ``group:finance`` of another tenant is another group."""
        return sorted({f"user:{self.username}", "everyone", *(f"group:{g}" for g in self.groups)})


class Directory(Protocol):
    def user_by_email(self, email: str) -> KeycloakUser | None: ...


class TokenSource(Protocol):
    def token_for(self, user: KeycloakUser) -> str: ...


K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small thread-safe cache whose entries expire; ``ttl_for`` lets misses expire sooner than hits."""

    def __init__(
        self,
        ttl_for: Callable[[V], float],
        clock: Callable[[], float] = time.monotonic,
        max_size: int = 10_000,
    ) -> None:
        self._ttl_for = ttl_for
        self._clock = clock
        self._max_size = max_size
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        now = self._clock()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = load()
        with self._lock:
            if len(self._entries) >= self._max_size:
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
                if len(self._entries) >= self._max_size:
                    self._entries.clear()
            self._entries[key] = (now + self._ttl_for(value), value)
        return value


class CachedDirectory:
    """Remembers each lookup for a while: a channel's audience is resolved on every question."""

    def __init__(
        self,
        inner: Directory,
        ttl_s: float,
        unknown_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._cache: TtlCache[str, KeycloakUser | None] = TtlCache(
            lambda user: ttl_s if user is not None else unknown_ttl_s, clock
        )

    def user_by_email(self, email: str) -> KeycloakUser | None:
        key = email.strip().lower()
        return self._cache.get_or_load(key, lambda: self._inner.user_by_email(key))


class KeycloakDirectory:
    """Keycloak's admin API through python-keycloak, as the bot client's service account."""

    def __init__(self, settings: KeycloakClientSettings) -> None:
        self._settings = settings
        self._admin: KeycloakAdmin | None = None
        self._lock = threading.Lock()

    def _client(self) -> KeycloakAdmin:
        # Built on first use: the bot starts (and answers "try again later") while Keycloak is down.
        with self._lock:
            if self._admin is None:
                self._admin = KeycloakAdmin(
                    server_url=self._settings.server_url,
                    realm_name=self._settings.realm,
                    client_id=self._settings.client_id,
                    client_secret_key=self._settings.client_secret.get_secret_value(),
                    timeout=int(self._settings.timeout_s),
                )
            return self._admin

    def user_by_email(self, email: str) -> KeycloakUser | None:
        try:
            admin = self._client()
            found = [
                u
                for u in admin.get_users({"email": email, "exact": True})
                if u.get("enabled", True)
                and u.get("emailVerified", False)
                and str(u.get("email", "")).lower() == email.lower()
            ]
            if len(found) != 1:
                if found:
                    log.warning("%d Keycloak users share the email of a chat user; matching none", len(found))
                return None
            user = found[0]
            groups = admin.get_user_groups(user["id"])
        except KeycloakConnectionError as exc:
            with self._lock:
                self._admin = None
            raise DependencyUnavailable(f"the identity provider is unreachable: {exc}") from exc
        except KeycloakError as exc:
            with self._lock:
                self._admin = None
            raise DependencyUnavailable(f"the identity provider refused a user lookup: {exc}") from exc
        return KeycloakUser(
            id=str(user["id"]),
            username=str(user["username"]),
            email=str(user.get("email", "")),
            # As the services read groups from a token: the path without its leading slash.
            groups=tuple(sorted({str(g.get("path") or g["name"]).strip("/") for g in groups})),
            tenant=_first(user.get("attributes", {}).get(TENANT_ATTRIBUTE)),
        )


def _first(values: Any) -> str:
    # Keycloak keeps every attribute as a list of strings.
    return str(values[0]) if isinstance(values, list) and values else ""


class KeycloakTokenExchange:
    """User tokens by impersonation token exchange, each kept until shortly before it expires."""

    def __init__(self, settings: KeycloakClientSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._openid = KeycloakOpenID(
            server_url=settings.server_url,
            realm_name=settings.realm,
            client_id=settings.client_id,
            client_secret_key=settings.client_secret.get_secret_value(),
            timeout=int(settings.timeout_s),
        )
        self._own: tuple[str, float] | None = None
        self._users: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def token_for(self, user: KeycloakUser) -> str:
        with self._lock:
            cached = self._users.get(user.id)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        try:
            reply = self._exchange(user)
        except KeycloakAuthenticationError:
            # Our own token may have been revoked early; one fresh try.
            with self._lock:
                self._own = None
            try:
                reply = self._exchange(user)
            except KeycloakAuthenticationError as exc:
                raise DependencyUnavailable(
                    f"the identity provider rejected client {self._settings.client_id!r}: {exc}"
                ) from exc
        token = str(reply["access_token"])
        with self._lock:
            self._users[user.id] = (token, self._expiry(reply))
        return token

    def _exchange(self, user: KeycloakUser) -> dict[str, Any]:
        try:
            return self._openid.exchange_token(
                self._own_token(),
                audience=self._settings.audience,
                subject=user.id,
                requested_token_type=ACCESS_TOKEN_TYPE,
            )
        except KeycloakConnectionError as exc:
            raise DependencyUnavailable(f"the identity provider is unreachable: {exc}") from exc
        except KeycloakAuthenticationError:
            raise
        except KeycloakError as exc:
            if exc.response_code == 403:
                raise PermissionDenied(
                    f"Keycloak does not let client {self._settings.client_id!r} act for users "
                    "(grant it the impersonation token-exchange permission)"
                ) from exc
            raise DependencyUnavailable(f"the identity provider refused the token exchange: {exc}") from exc

    def _own_token(self) -> str:
        with self._lock:
            own = self._own
        if own is not None and own[1] > self._clock():
            return own[0]
        try:
            reply = self._openid.token(grant_type="client_credentials")
        except KeycloakConnectionError as exc:
            raise DependencyUnavailable(f"the identity provider is unreachable: {exc}") from exc
        except KeycloakError as exc:
            raise DependencyUnavailable(
                f"the identity provider rejected client {self._settings.client_id!r}: {exc}"
            ) from exc
        with self._lock:
            self._own = (str(reply["access_token"]), self._expiry(reply))
        return str(reply["access_token"])

    def _expiry(self, reply: dict[str, Any]) -> float:
        return self._clock() + max(0.0, float(reply.get("expires_in", 300)) - TOKEN_MARGIN_S)
