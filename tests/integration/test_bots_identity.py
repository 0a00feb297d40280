"""python-keycloak's admin API and token exchange against the dev Keycloak stand-in, and the tokens it
issues verified as the services verify them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from copilot.auth import TokenVerifier
from copilot.devissuer import DevClient, DevIssuer, load_or_create_key, load_users, serve_in_thread
from copilot.errors import DependencyUnavailable, PermissionDenied
from copilot.settings import AuthSettings
from services.bots.identity import KeycloakDirectory, KeycloakTokenExchange
from services.bots.settings import KeycloakClientSettings
from tests.conftest import SAMPLE_USERS, free_port

BOT = DevClient("copilot-bot", "bot-secret", admin_roles=("view-users",), may_impersonate=True)
NO_LOOKUP = DevClient("no-lookup", "secret-2", may_impersonate=True)
NO_EXCHANGE = DevClient("no-exchange", "secret-3", admin_roles=("view-users",))


@pytest.fixture(scope="module")
def keycloak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevIssuer]:
    port = free_port()
    issuer = DevIssuer(
        f"http://127.0.0.1:{port}/realms/copilot",
        "copilot",
        load_or_create_key(Path(tmp_path_factory.mktemp("kc")) / "key.pem"),
        load_users(SAMPLE_USERS),
        {c.client_id: c for c in (BOT, NO_LOOKUP, NO_EXCHANGE)},
    )
    server = serve_in_thread(issuer, "127.0.0.1", port)
    yield issuer
    server.shutdown()


def _settings(keycloak: DevIssuer, client: DevClient, secret: str | None = None) -> KeycloakClientSettings:
    return KeycloakClientSettings(
        server_url=keycloak.issuer.split("/realms/")[0] + "/",
        client_id=client.client_id,
        client_secret=SecretStr(secret or client.secret),
    )


def test_users_are_found_by_exact_verified_email_with_their_groups(keycloak: DevIssuer) -> None:
    directory = KeycloakDirectory(_settings(keycloak, BOT))
    alice = directory.user_by_email("Alice@acme.example")
    assert alice is not None
    assert (alice.id, alice.username, alice.groups, alice.tenant) == (
        keycloak.users["alice"].subject,
        "alice",
        ("finance",),
        "acme",
    )
    assert directory.user_by_email("alice@acme") is None, "exact match only"
    assert directory.user_by_email("nobody@acme.example") is None


def test_user_lookups_need_the_view_users_role(keycloak: DevIssuer) -> None:
    with pytest.raises(DependencyUnavailable, match="refused a user lookup"):
        KeycloakDirectory(_settings(keycloak, NO_LOOKUP)).user_by_email("alice@acme.example")
    admin = keycloak.issuer.replace("/realms/", "/admin/realms/")
    assert (
        requests.get(f"{admin}/users", params={"email": "alice@acme.example"}, timeout=5).status_code == 401
    )


def test_token_exchange_gives_a_token_the_services_accept_as_the_user(keycloak: DevIssuer) -> None:
    directory = KeycloakDirectory(_settings(keycloak, BOT))
    exchange = KeycloakTokenExchange(_settings(keycloak, BOT))
    bob = directory.user_by_email("bob@acme.example")
    assert bob is not None
    token = exchange.token_for(bob)
    principal = TokenVerifier(AuthSettings(issuer=keycloak.issuer, audience="copilot")).verify(token)
    assert (principal.username, principal.groups, principal.tenant) == ("bob", ("engineering",), "acme")
    assert exchange.token_for(bob) == token, "kept until shortly before it expires"


def test_token_exchange_needs_the_impersonation_permission_and_the_right_secret(keycloak: DevIssuer) -> None:
    alice = KeycloakDirectory(_settings(keycloak, BOT)).user_by_email("alice@acme.example")
    assert alice is not None
    with pytest.raises(PermissionDenied, match="impersonation"):
        KeycloakTokenExchange(_settings(keycloak, NO_EXCHANGE)).token_for(alice)
    with pytest.raises(DependencyUnavailable, match="rejected client"):
        KeycloakTokenExchange(_settings(keycloak, BOT, secret="wrong")).token_for(alice)


def test_only_the_clients_own_token_can_be_exchanged(keycloak: DevIssuer) -> None:
    token_url = f"{keycloak.issuer}/protocol/openid-connect/token"
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "client_id": BOT.client_id,
        "client_secret": BOT.secret,
        "subject_token": keycloak.mint("alice"),
        "requested_subject": "carol",
    }
    reply = requests.post(token_url, data=form, timeout=5)
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_token"
