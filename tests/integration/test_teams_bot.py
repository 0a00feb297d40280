"""The Teams bot over real HTTP with botbuilder's real JWT validation.

Microsoft's servers cannot be reached here, so three local stand-ins play them:
- the Bot Framework channel's OpenID metadata and signing keys: activities are signed with a local RSA key
  published there (botbuilder is configured with its metadata URL, as it would be with Microsoft's), so the
  bot validates signature, issuer, audience (our app id), expiry and the serviceUrl claim for real;
- the Bot Framework connector (the activity's serviceUrl): a recorder of what the bot posts, updates and
  asks (members, personal chats), checking each call's bearer token;
- Azure AD's token endpoint for the bot's outgoing calls: ``LocalCredentials`` mints that token locally.
Everything else (Keycloak stand-in, token exchange, gRPC with verified tokens, Kafka) is real.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import jwt
import pytest
import requests
from botframework.connector.auth import AppCredentials, ServiceClientCredentialsFactory
from cryptography.hazmat.primitives.asymmetric import rsa
from kafka import KafkaConsumer
from pydantic import SecretStr

from copilot.events.v1 import events_pb2
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from services.bots.server import Bots, build
from services.bots.settings import BotsSettings, KeycloakClientSettings, TeamsSettings
from tests.conftest import free_port, shows_secret_figure
from tests.integration.bots_standins import (
    BOT_CLIENT,
    FINANCE_QUESTION,
    REFUSAL,
    AclGeneration,
    start_generation,
    start_issuer,
    wait_for,
)

APP_ID = "00000000-0000-0000-0000-00000000b07"
CHANNEL_ISSUER = "https://api.botframework.com"
TEAM = "19:team-acme@thread.tacv2"
CHANNEL = "19:general@thread.tacv2"
MEMBERS = {
    "29:alice": "alice@acme.example",
    "29:bob": "bob@acme.example",
    "29:dave": "dave@elsewhere.example",
}
BOB_ACL = ["everyone", "group:engineering", "user:bob"]


def _jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", **extra}


@dataclass
class ConnectorCall:
    method: str
    path: str
    body: dict[str, Any]


@dataclass
class MicrosoftStandIn:
    """The channel's OpenID metadata and keys, and the connector recorder, on one loopback server."""

    channel_key: rsa.RSAPrivateKey
    aad_key: rsa.RSAPrivateKey
    calls: list[ConnectorCall] = field(default_factory=list)
    rejected_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                path = unquote(urlsplit(self.path).path)
                if path == "/v1/.well-known/openidconfiguration":
                    self._send(200, {"issuer": CHANNEL_ISSUER, "jwks_uri": f"{standin.url}/v1/keys"})
                    return
                if path == "/v1/keys":
                    self._send(
                        200, {"keys": [_jwk(standin.channel_key, "channel-key", endorsements=["msteams"])]}
                    )
                    return
                auth = self.headers.get("Authorization", "")
                try:
                    jwt.decode(
                        auth[7:], standin.aad_key.public_key(), algorithms=["RS256"], audience=CHANNEL_ISSUER
                    )
                except jwt.PyJWTError:
                    standin.rejected_tokens += 1
                    self._send(401, {"error": {"code": "Unauthorized"}})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with standin._lock:
                    standin.calls.append(ConnectorCall(method, path, body))
                self._send(200, standin.answer(method, path))

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._handle("PUT")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def answer(self, method: str, path: str) -> Any:
        parts = path.strip("/").split("/")
        if method == "GET" and parts[-1] == "pagedmembers":
            return {"members": [_member(m) for m in MEMBERS], "continuationToken": None}
        if method == "GET" and parts[-2] == "members":
            return _member(parts[-1])
        if method == "POST" and parts == ["v3", "conversations"]:
            return {"id": f"a:personal-{uuid.uuid4().hex[:6]}", "activityId": "p1"}
        if parts[-1] != "activities" and method == "PUT":
            return {"id": parts[-1]}
        return {"id": f"reply-{uuid.uuid4().hex[:6]}"}

    def sent(self) -> list[ConnectorCall]:
        with self._lock:
            return [c for c in self.calls if c.method in ("POST", "PUT") and "/activities" in c.path]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()


def _member(member_id: str) -> dict[str, Any]:
    return {"id": member_id, "name": member_id[3:], "email": MEMBERS.get(member_id), "aadObjectId": member_id}


class LocalAadCredentials(AppCredentials):
    """What MSAL would fetch from Azure AD for the bot's outgoing calls, minted locally."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        super().__init__(app_id=APP_ID, oauth_scope=CHANNEL_ISSUER)
        self._key = key

    def get_access_token(self, force_refresh: bool = False) -> str:
        now = int(time.time())
        claims = {"aud": CHANNEL_ISSUER, "appid": APP_ID, "iat": now, "exp": now + 600}
        return jwt.encode(claims, self._key, algorithm="RS256")


class LocalCredentialFactory(ServiceClientCredentialsFactory):
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key

    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == APP_ID

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> AppCredentials:
        return LocalAadCredentials(self._key)


@dataclass
class TeamsStack:
    url: str
    microsoft: MicrosoftStandIn
    generation: AclGeneration
    bots: Bots
    topic: str
    bootstrap: str
    publisher: EventPublisher

    def token(self, key: rsa.RSAPrivateKey | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": CHANNEL_ISSUER,
            "aud": APP_ID,
            "serviceurl": self.microsoft.url,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            **overrides,
        }
        signing = key or self.microsoft.channel_key
        return jwt.encode(claims, signing, algorithm="RS256", headers={"kid": "channel-key"})

    def send(self, activity: dict[str, Any], token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token()}"} if token != "" else {}
        return requests.post(f"{self.url}/api/messages", json=activity, headers=headers, timeout=10)

    def message(
        self, sender: str, text: str, conversation_type: str = "channel", **extra: Any
    ) -> dict[str, Any]:
        channel = conversation_type == "channel"
        return {
            "type": "message",
            "id": f"act-{uuid.uuid4().hex[:6]}",
            "serviceUrl": self.microsoft.url,
            "channelId": "msteams",
            "from": {"id": sender, "name": sender[3:], "aadObjectId": sender},
            "recipient": {"id": "28:copilot", "name": "copilot"},
            "conversation": {
                "id": f"{CHANNEL};messageid=1700" if channel else f"a:personal-{sender}",
                "conversationType": conversation_type,
                "tenantId": "tenant-acme",
            },
            "text": f"<at>copilot</at> {text}" if channel else text,
            "entities": [
                {
                    "type": "mention",
                    "mentioned": {"id": "28:copilot", "name": "copilot"},
                    "text": "<at>copilot</at>",
                }
            ]
            if channel
            else [],
            "channelData": {"team": {"id": TEAM}, "tenant": {"id": "tenant-acme"}}
            if channel
            else {"tenant": {"id": "tenant-acme"}},
            **extra,
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[TeamsStack]:
    tmp = tmp_path_factory.mktemp("teams-bot")
    issuer, issuer_server = start_issuer(tmp)
    generation = AclGeneration()
    grpc_server, target = start_generation(issuer, generation)
    microsoft = MicrosoftStandIn(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    microsoft_url = microsoft.start()
    topic = f"copilot.feedback.test-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    publisher = EventPublisher(kafka_bootstrap, Path(tmp) / "spool.sqlite")
    settings = BotsSettings(
        http_port=free_port(),
        generation_target=target,
        deadline_s=5.0,
        database=Path(tmp) / "bots.sqlite",
        keycloak=KeycloakClientSettings(
            server_url=issuer.issuer.split("/realms/")[0] + "/",
            client_id=BOT_CLIENT.client_id,
            client_secret=SecretStr(BOT_CLIENT.secret),
        ),
        teams=TeamsSettings(
            enabled=True,
            app_id=APP_ID,
            openid_metadata_url=f"{microsoft_url}/v1/.well-known/openidconfiguration",
            token_issuer=CHANNEL_ISSUER,
            update_interval_s=0.0,
        ),
    )
    bots = build(
        settings,
        TopicPublisher(publisher, topic, key=lambda e: e.interaction_id),
        teams_credentials=LocalCredentialFactory(microsoft.aad_key),
    )
    port = bots.http.start()
    yield TeamsStack(
        f"http://127.0.0.1:{port}", microsoft, generation, bots, topic, kafka_bootstrap, publisher
    )
    bots.stop()
    publisher.close()
    grpc_server.stop(0)
    microsoft.server.shutdown()
    issuer_server.shutdown()


@pytest.fixture(autouse=True)
def fresh(stack: TeamsStack) -> None:
    stack.microsoft.reset()
    stack.generation.calls.clear()


def _cards(calls: list[ConnectorCall]) -> list[dict[str, Any]]:
    return [a["content"] for c in calls for a in c.body.get("attachments") or []]


def test_channel_question_is_narrowed_to_the_team_and_the_asker_gets_a_personal_answer(
    stack: TeamsStack,
) -> None:
    assert stack.send(stack.message("29:alice", FINANCE_QUESTION)).status_code in (200, 201)
    personal = wait_for(
        lambda: [c for c in stack.microsoft.calls if c.method == "POST" and c.path == "/v3/conversations"],
        what="personal chat",
    )[0]
    assert personal.body["members"] == [{"id": "29:alice"}] and personal.body["isGroup"] is False
    wait_for(lambda: len(_cards(stack.microsoft.sent())) == 2, what="both cards")

    channel_ask, private_ask = stack.generation.calls
    assert channel_ask.username == "alice" and channel_ask.claims["azp"] == BOT_CLIENT.client_id
    # Bob may read less; dave has no copilot account, so he counts as someone who reads only "everyone".
    assert channel_ask.audience == [["everyone"], BOB_ACL]
    assert private_ask.audience == []

    in_channel = [c for c in stack.microsoft.sent() if CHANNEL in c.path]
    assert in_channel[0].body["text"] == "Looking that up…"
    channel_card = json.dumps(_cards(in_channel))
    assert REFUSAL in channel_card and not shows_secret_figure(channel_card)
    private_card = json.dumps(_cards([c for c in stack.microsoft.sent() if "a:personal-" in c.path]))
    assert "412,000" in private_card and "Only you can see this" in private_card
    assert stack.microsoft.rejected_tokens == 0, "every connector call carried the bot's token"


def test_personal_chat_answer_is_a_card_with_sources_and_feedback(stack: TeamsStack) -> None:
    stack.send(stack.message("29:alice", FINANCE_QUESTION, conversation_type="personal"))
    cards = wait_for(lambda: _cards(stack.microsoft.sent()), what="card")
    assert stack.generation.calls[0].audience == []
    card = cards[-1]
    assert card["type"] == "AdaptiveCard"
    text = json.dumps(card["body"])
    assert (
        "412,000" in text
        and "[Q3 2026 budget memo](https://docs.acme.example/finance/q3-2026-budget-memo.md)" in text
    )
    actions = card["actions"]
    assert [a["data"]["copilot_feedback"] for a in actions] == ["positive", "negative", "report"]
    updates = [c for c in stack.microsoft.sent() if c.method == "PUT"]
    assert any(u.body.get("text", "").startswith("According to") for u in updates), "the answer streams"


def test_feedback_submit_publishes_a_feedback_event(stack: TeamsStack) -> None:
    value = {"copilot_feedback": "negative", "interaction_id": "teams-interaction-1"}
    stack.send(stack.message("29:alice", "", conversation_type="personal", value=value))
    wait_for(lambda: stack.microsoft.sent(), what="thanks")
    assert stack.publisher.flush(30)
    consumer = KafkaConsumer(
        stack.topic,
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4().hex[:6]}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=20_000,
    )
    event = events_pb2.FeedbackEvent.FromString(next(iter(consumer)).value)
    consumer.close()
    assert event.interaction_id == "teams-interaction-1" and event.channel == "teams"
    assert event.rating == events_pb2.FEEDBACK_RATING_NEGATIVE


def test_unknown_users_are_told_how_to_get_access(stack: TeamsStack) -> None:
    stack.send(stack.message("29:dave", FINANCE_QUESTION, conversation_type="personal"))
    reply = wait_for(lambda: stack.microsoft.sent(), what="reply")[-1]
    assert "dave@elsewhere.example" in reply.body["text"] and "service desk" in reply.body["text"]
    assert stack.generation.calls == []


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="no token"),
        pytest.param("forged", id="signed with another key"),
        pytest.param("wrong-audience", id="for another bot"),
        pytest.param("wrong-service-url", id="serviceUrl claim differs"),
        pytest.param("expired", id="expired"),
    ],
)
def test_activities_that_do_not_validate_are_rejected(stack: TeamsStack, token: str) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = {
        "": "",
        "forged": stack.token(key=other),
        "wrong-audience": stack.token(aud="another-bot"),
        "wrong-service-url": stack.token(serviceurl="http://127.0.0.1:9/elsewhere"),
        "expired": stack.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
    }
    reply = stack.send(
        stack.message("29:alice", FINANCE_QUESTION, conversation_type="personal"), tokens[token]
    )
    assert reply.status_code == 401
    time.sleep(0.3)
    assert stack.generation.calls == [] and stack.microsoft.sent() == []
