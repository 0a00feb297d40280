"""A small OIDC issuer for local runs: the parts of a Keycloak realm the copilot talks to.

It serves the discovery document, the JWKS and the token endpoint (password grant) for the sample users,
signing RS256 tokens with a key generated at first start. The services verify these tokens exactly as
they verify Keycloak's; production points the same settings at the customer's realm.
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
from urllib.parse import parse_qs

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
    def __init__(self, issuer: str, audience: str, key: rsa.RSAPrivateKey, users: dict[str, DevUser]) -> None:
        self.issuer = issuer
        self.audience = audience
        self.users = users
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
            "grant_types_supported": ["password"],
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


def _thumbprint(jwk: dict[str, Any]) -> str:
    import base64
    import hashlib

    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def make_http_server(issuer: DevIssuer, host: str, port: int) -> ThreadingHTTPServer:
    path_prefix = "/" + issuer.issuer.split("/", 3)[3] if issuer.issuer.count("/") >= 3 else ""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
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
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != f"{path_prefix}/protocol/openid-connect/token":
                self._send(404, {"error": "not_found"})
                return
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            status, body = issuer.password_grant(form)
            self._send(status, body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("dev issuer: " + format, *args)

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(issuer: DevIssuer, host: str, port: int) -> ThreadingHTTPServer:
    server = make_http_server(issuer, host, port)
    threading.Thread(target=server.serve_forever, name="dev-issuer", daemon=True).start()
    return server


def main() -> None:
    """Entry point used by the launcher: ``python -m copilot.devissuer USERS KEY ISSUER AUDIENCE PORT``."""
    import sys

    users_path, key_path, issuer_url, audience, port = sys.argv[1:6]
    logging.basicConfig(level=logging.INFO)
    issuer = DevIssuer(issuer_url, audience, load_or_create_key(Path(key_path)), load_users(Path(users_path)))
    server = make_http_server(issuer, "127.0.0.1", int(port))
    log.info("dev issuer %s on 127.0.0.1:%s", issuer_url, port)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
