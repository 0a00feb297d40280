"""A small OIDC issuer for local runs: the parts of a Keycloak realm the copilot talks to.

It serves the discovery document, the JWKS and the token endpoint (password grant) for the sample users,
signing RS256 tokens with a key generated at first start. The services verify these tokens exactly as
they verify Keycloak's; production points the same settings at the customer's realm.

For the chat bots it also plays the parts of Keycloak a confidential client uses: the client-credentials
grant, the impersonation token exchange (the bot trades its own token for one of a user, so questions run
with that user's rights) and the two admin API reads that find a user by email and list their groups.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger(__name__)

TOKEN_LIFETIME_S = 3600


@dataclass(frozen=True)
class DevUser:
    username: str
    password: str
    email: str
    name: str
    groups: tuple[str, ...]
    roles: tuple[str, ...]
    tenant: str

    @property
    def subject(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"copilot-dev-user:{self.username}"))


def load_users(path: Path) -> dict[str, DevUser]:
    raw = json.loads(path.read_text())
    return {
        u["username"]: DevUser(
            username=u["username"],
            password=u["password"],
            email=u.get("email", ""),
            name=u.get("name", ""),
            groups=tuple(u.get("groups", [])),
            roles=tuple(u.get("roles", [])),
            tenant=u.get("tenant", ""),
        )
        for u in raw
    }


@dataclass(frozen=True)
class DevClient:
    """A confidential client with a service account, such as the chat bots' ``copilot-bot``."""

    client_id: str
    secret: str
    # Keycloak's realm-management roles of the service account; "view-users" allows user lookups.
    admin_roles: tuple[str, ...] = ()
    # Keycloak's impersonation permission: may exchange its own token for a token of any user.
    may_impersonate: bool = False

    @property
    def subject(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"copilot-dev-client:{self.client_id}"))


def load_clients(path: Path) -> dict[str, DevClient]:
    return {
        c["client_id"]: DevClient(
            client_id=c["client_id"],
            secret=c["secret"],
            admin_roles=tuple(c.get("admin_roles", [])),
            may_impersonate=bool(c.get("may_impersonate", False)),
        )
        for c in json.loads(path.read_text())
    }


TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
USER_LOOKUP_ROLE = "view-users"


def load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return key


class DevIssuer:
    def __init__(
        self,
        issuer: str,
        audience: str,
        key: rsa.RSAPrivateKey,
        users: dict[str, DevUser],
        clients: dict[str, DevClient] | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.users = users
        self.clients = clients or {}
        self._key = key
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        self.kid = jwt.PyJWK(public_jwk).key_id or _thumbprint(public_jwk)
        self.jwks = {"keys": [{**public_jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def mint(self, username: str, lifetime_s: int = TOKEN_LIFETIME_S, **overrides: Any) -> str:
        """A token for a sample user; ``overrides`` replaces claims (tests use it for bad tokens)."""
        user = self.users[username]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user.subject,
            "typ": "Bearer",
            "azp": "copilot-cli",
            "iat": now,
            "exp": now + lifetime_s,
            "jti": str(uuid.uuid4()),
            "preferred_username": user.username,
            "email": user.email,
            "name": user.name,
            "groups": [f"/{g}" for g in user.groups],
            "realm_access": {"roles": list(user.roles)},
            "tenant": user.tenant,
        }
        claims.update(overrides)
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def discovery(self) -> dict[str, Any]:
        base = f"{self.issuer}/protocol/openid-connect"
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{base}/certs",
            "token_endpoint": f"{base}/token",
            "grant_types_supported": ["password", "client_credentials", TOKEN_EXCHANGE_GRANT],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def password_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != "password":
            return 400, {"error": "unsupported_grant_type"}
        user = self.users.get(form.get("username", ""))
        if user is None or user.password != form.get("password"):
            return 401, {"error": "invalid_grant", "error_description": "Invalid user credentials"}
        token = self.mint(user.username)
        return 200, {
            "access_token": token,
            "expires_in": TOKEN_LIFETIME_S,
            "token_type": "Bearer",
            "scope": "openid profile email",
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint: the grant named in the form."""
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self.client_credentials_grant(form)
        if grant == TOKEN_EXCHANGE_GRANT:
            return self.exchange_grant(form)
        return self.password_grant(form)

    def _client(self, form: dict[str, str]) -> DevClient | None:
        client = self.clients.get(form.get("client_id", ""))
        if client is None or client.secret != form.get("client_secret"):
            return None
        return client

    def client_credentials_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        client = self._client(form)
        if client is None:
            return 401, {"error": "unauthorized_client", "error_description": "Invalid client credentials"}
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "realm-management",
            "sub": client.subject,
            "typ": "Bearer",
            "azp": client.client_id,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": str(uuid.uuid4()),
            "preferred_username": f"service-account-{client.client_id}",
            "resource_access": {"realm-management": {"roles": list(client.admin_roles)}},
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        return 200, {"access_token": token, "expires_in": TOKEN_LIFETIME_S, "token_type": "Bearer"}

    def exchange_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Keycloak's impersonation exchange: the client's own token for a token of ``requested_subject``
        (user id or username) carrying that user's groups and roles, as the password grant would."""
        client = self._client(form)
        if client is None:
            return 401, {"error": "unauthorized_client", "error_description": "Invalid client credentials"}
        if not client.may_impersonate:
            return 403, {"error": "access_denied", "error_description": "Client not allowed to exchange"}
        own = self._verified_claims(form.get("subject_token", ""))
        if own is None or own.get("azp") != client.client_id:
            return 400, {"error": "invalid_token", "error_description": "Invalid subject token"}
        if form.get("audience", self.audience) != self.audience:
            return 400, {"error": "invalid_client", "error_description": "Audience not found"}
        requested = form.get("requested_subject", "")
        user = next((u for u in self.users.values() if requested in (u.subject, u.username)), None)
        if user is None:
            return 400, {"error": "invalid_token", "error_description": "Requested subject not found"}
        token = self.mint(user.username, azp=client.client_id, act={"sub": client.subject})
        return 200, {
            "access_token": token,
            "expires_in": TOKEN_LIFETIME_S,
            "token_type": "Bearer",
            "issued_token_type": ACCESS_TOKEN_TYPE,
        }

    def _verified_claims(self, token: str) -> dict[str, Any] | None:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp", "sub", "azp"]},
            )
        except jwt.PyJWTError:
            return None
        return claims

    def admin_get(self, path: str, query: dict[str, str], bearer: str) -> tuple[int, Any]:
        """The admin API reads python-keycloak's ``get_users`` and ``get_user_groups`` make, for a client
        whose service account holds ``view-users``. ``path`` is relative to ``/admin/realms/<realm>``."""
        claims = self._verified_claims(bearer)
        if claims is None:
            return 401, {"error": "HTTP 401 Unauthorized"}
        roles = claims.get("resource_access", {}).get("realm-management", {}).get("roles", [])
        if USER_LOOKUP_ROLE not in roles:
            return 403, {"error": "HTTP 403 Forbidden"}
        first, most = int(query.get("first", 0)), int(query.get("max", 100))
        parts = path.strip("/").split("/")
        if parts == ["users"]:
            email = query.get("email", "").lower()
            exact = query.get("exact", "false").lower() == "true"
            found = [
                _user_representation(u)
                for u in self.users.values()
                if not email or (u.email.lower() == email if exact else email in u.email.lower())
            ]
            return 200, found[first : first + most]
        user = next((u for u in self.users.values() if len(parts) > 1 and u.subject == parts[1]), None)
        if parts[0] != "users" or user is None or len(parts) > 3:
            return 404, {"error": "User not found"}
        if len(parts) == 2:
            return 200, _user_representation(user)
        if parts[2] != "groups":
            return 404, {"error": "not_found"}
        groups = [
            {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"copilot-dev-group:{g}")), "name": g, "path": f"/{g}"}
            for g in user.groups
        ]
        return 200, groups[first : first + most]


def _user_representation(user: DevUser) -> dict[str, Any]:
    first, _, last = user.name.partition(" ")
    return {
        "id": user.subject,
        "username": user.username,
        "email": user.email,
        "emailVerified": bool(user.email),
        "enabled": True,
        "firstName": first,
        "lastName": last,
        "attributes": {"tenant": [user.tenant]} if user.tenant else {},
    }


def _thumbprint(jwk: dict[str, Any]) -> str:
    import base64
    import hashlib

    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def make_http_server(issuer: DevIssuer, host: str, port: int) -> ThreadingHTTPServer:
    path_prefix = "/" + issuer.issuer.split("/", 3)[3] if issuer.issuer.count("/") >= 3 else ""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == f"{path_prefix}/.well-known/openid-configuration":
                self._send(200, issuer.discovery())
            elif self.path == f"{path_prefix}/protocol/openid-connect/certs":
                self._send(200, issuer.jwks)
            elif self.path.startswith(f"/admin{path_prefix}/"):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                auth = self.headers.get("Authorization", "")
                bearer = auth[7:] if auth.lower().startswith("bearer ") else ""
                self._send(*issuer.admin_get(url.path[len(f"/admin{path_prefix}") :], query, bearer))
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != f"{path_prefix}/protocol/openid-connect/token":
                self._send(404, {"error": "not_found"})
                return
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            status, body = issuer.token(form)
            self._send(status, body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("dev issuer: " + format, *args)

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(issuer: DevIssuer, host: str, port: int) -> ThreadingHTTPServer:
    server = make_http_server(issuer, host, port)
    threading.Thread(target=server.serve_forever, name="dev-issuer", daemon=True).start()
    return server


def main() -> None:
    """Entry point used by the launcher:
    ``python -m copilot.devissuer USERS KEY ISSUER AUDIENCE PORT [CLIENTS]`` (CLIENTS: JSON list of clients).
    """
    import sys

    users_path, key_path, issuer_url, audience, port = sys.argv[1:6]
    clients = load_clients(Path(sys.argv[6])) if len(sys.argv) > 6 else {}
    logging.basicConfig(level=logging.INFO)
    issuer = DevIssuer(
        issuer_url, audience, load_or_create_key(Path(key_path)), load_users(Path(users_path)), clients
    )
    server = make_http_server(issuer, "127.0.0.1", int(port))
    log.info("dev issuer %s on 127.0.0.1:%s", issuer_url, port)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
