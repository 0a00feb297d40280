"""Token verification against a real JWKS served on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from copilot.auth import TokenVerifier
from copilot.devissuer import DevIssuer
from copilot.errors import Unauthenticated
from copilot.settings import AuthSettings


def test_valid_token_yields_principal_with_groups_roles_and_tenant(
    issuer: DevIssuer, auth_settings: AuthSettings
) -> None:
    principal = TokenVerifier(auth_settings).verify(issuer.mint("alice"))
    assert principal.username == "alice"
    assert principal.groups == ("finance",)
    assert principal.tenant == "acme"
    assert "group:finance" in principal.acl_principals() and "user:alice" in principal.acl_principals()


def test_a_subgroup_keeps_its_path_and_does_not_pass_for_a_top_level_group_of_its_name(
    issuer: DevIssuer, auth_settings: AuthSettings
) -> None:
    token = issuer.mint("alice", groups=["/contractors/finance", "/legal/"])
    principal = TokenVerifier(auth_settings).verify(token)
    assert principal.groups == ("contractors/finance", "legal")
    assert "group:finance" not in principal.acl_principals()


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"aud": "another-client"}, "audience"),
        ({"iss": "http://127.0.0.1:1/realms/evil"}, "issued by"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "invalid token"),
    ],
)
def test_bad_claims_are_rejected(
    issuer: DevIssuer, auth_settings: AuthSettings, claims: dict[str, object], message: str
) -> None:
    with pytest.raises(Unauthenticated, match=message):
        TokenVerifier(auth_settings).verify(issuer.mint("alice", **claims))


def _claims(issuer: DevIssuer) -> dict[str, object]:
    return jwt.decode(issuer.mint("alice"), options={"verify_signature": False})


def test_forged_signature_is_rejected(issuer: DevIssuer, auth_settings: AuthSettings) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(_claims(issuer), other, algorithm="RS256", headers={"kid": issuer.kid})
    with pytest.raises(Unauthenticated, match="invalid token"):
        TokenVerifier(auth_settings).verify(forged)


def test_unknown_key_is_rejected(issuer: DevIssuer, auth_settings: AuthSettings) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(issuer), other, algorithm="RS256", headers={"kid": "rotated-away"})
    with pytest.raises(Unauthenticated, match="unknown key"):
        TokenVerifier(auth_settings).verify(token)


def test_alg_none_and_hs256_key_confusion_are_rejected(
    issuer: DevIssuer, auth_settings: AuthSettings
) -> None:
    unsigned = jwt.encode(_claims(issuer), None, algorithm="none")
    with pytest.raises(Unauthenticated, match="not accepted"):
        TokenVerifier(auth_settings).verify(unsigned)
    # The classic confusion attack: an HMAC "signature" keyed with the public key. PyJWT refuses to make
    # one, so it is assembled by hand.
    public_pem = jwt.PyJWK(issuer.jwks["keys"][0]).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
        + b"."
        + b64(json.dumps(_claims(issuer)).encode())
    )
    confused = (
        signing_input + b"." + b64(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    ).decode()
    with pytest.raises(Unauthenticated, match="not accepted"):
        TokenVerifier(auth_settings).verify(confused)


def test_garbage_token_is_rejected(auth_settings: AuthSettings) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        TokenVerifier(auth_settings).verify("not-a-jwt")
