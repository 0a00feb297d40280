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

import contextlib
import json
import sqlite3
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
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pydantic import SecretStr

from copilot.events.v1 import events_pb2
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from services.bots.core import PROBLEM_IN_CHANNEL
from services.bots.server import Bots, build
from services.bots.settings import BotsSettings, KeycloakClientSettings, TeamsSettings
from services.bots.store import ChannelConfig
from services.bots.teams import DISABLED
from tests.conftest import free_port, shows_secret_figure
from tests.integration.bots_standins import (
    BOT_CLIENT,
    FINANCE_QUESTION,
    REFUSAL,
    SLOW_QUESTION,
    VACATION_QUESTION,
    AclGeneration,
    failure_counts,
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
# Members the connector stand-in refuses to describe (403), as Teams does when it is having a bad day.
UNDESCRIBED = {"29:erin"}
TEAM_OWNERS = {"29:alice"}
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
    # Who a channel's member list names; tests that need someone else there set it.
    channel_members: list[str] = field(default_factory=lambda: ["29:alice", "29:bob"])
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
                if method == "GET" and path.rsplit("/", 1)[-1] in UNDESCRIBED:
                    self._send(403, {"error": {"code": "Forbidden", "message": "member lookup refused"}})
                    return
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
            return {"members": [_member(m) for m in self.channel_members], "continuationToken": None}
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

    def sent_in(self, conversation: str) -> list[ConnectorCall]:
        return [c for c in self.sent() if f"/v3/conversations/{conversation}/" in c.path]

    def sent_personally(self) -> list[ConnectorCall]:
        """What the bot posted in personal chats it opened (POST /v3/conversations, then its activities)."""
        return [c for c in self.sent() if "/v3/conversations/a:personal-" in c.path]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.channel_members = ["29:alice", "29:bob"]


def _member(member_id: str) -> dict[str, Any]:
    return {
        "id": member_id,
        "name": member_id[3:],
        "email": MEMBERS.get(member_id),
        "aadObjectId": member_id,
        "userRole": "owner" if member_id in TEAM_OWNERS else "user",
    }


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
    metrics: InMemoryMetricReader
    database: Path

    def failures(self) -> dict[str, int]:
        return failure_counts(self.metrics)

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
        self,
        sender: str,
        text: str,
        conversation_type: str = "channel",
        channel_id: str = CHANNEL,
        thread: str = "1700",
        **extra: Any,
    ) -> dict[str, Any]:
        """A message as Teams sends it; in a channel, ``thread`` is the reply chain (its first message)."""
        channel = conversation_type == "channel"
        tenant = extra.pop("tenant", "tenant-acme")
        return {
            "type": "message",
            "id": f"act-{uuid.uuid4().hex[:6]}",
            "serviceUrl": self.microsoft.url,
            "channelId": "msteams",
            "from": {"id": sender, "name": sender[3:], "aadObjectId": sender},
            "recipient": {"id": "28:copilot", "name": "copilot"},
            "conversation": {
                "id": f"{channel_id};messageid={thread}" if channel else f"a:personal-{sender}",
                "conversationType": conversation_type,
                "tenantId": tenant,
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
            "channelData": {"tenant": {"id": tenant}, **({"team": {"id": TEAM}} if channel else {})},
            **extra,
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[TeamsStack]:
    tmp = tmp_path_factory.mktemp("teams-bot")
    issuer, issuer_server = start_issuer(tmp)
    generation = AclGeneration(slow_s=4.0)
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
        deadline_s=2.0,
        database=Path(tmp) / "bots.sqlite",
        keycloak=KeycloakClientSettings(
            server_url=issuer.issuer.split("/realms/")[0] + "/",
            client_id=BOT_CLIENT.client_id,
            client_secret=SecretStr(BOT_CLIENT.secret),
        ),
        teams=TeamsSettings(
            enabled=True,
            app_id=APP_ID,
            allowed_tenant_ids=["tenant-acme"],
            openid_metadata_url=f"{microsoft_url}/v1/.well-known/openidconfiguration",
            token_issuer=CHANNEL_ISSUER,
            update_interval_s=0.0,
        ),
    )
    reader = InMemoryMetricReader()
    bots = build(
        settings,
        TopicPublisher(publisher, topic, key=lambda e: e.interaction_id),
        teams_credentials=LocalCredentialFactory(microsoft.aad_key),
        meter=MeterProvider(metric_readers=[reader]).get_meter("test"),
    )
    port = bots.http.start()
    yield TeamsStack(
        f"http://127.0.0.1:{port}",
        microsoft,
        generation,
        bots,
        topic,
        kafka_bootstrap,
        publisher,
        reader,
        settings.database,
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


def test_a_message_from_an_azure_ad_tenant_not_trusted_is_refused_and_asks_nothing(stack: TeamsStack) -> None:
    """Its administrators could give any user alice's email, which is all the bot matches users by."""
    before = stack.failures().get("foreign_tenant", 0)
    message = stack.message("29:alice", FINANCE_QUESTION, conversation_type="personal", tenant="evil")
    reply = stack.send(message)
    assert reply.status_code in (200, 201)
    told = wait_for(lambda: stack.microsoft.sent(), what="refusal")[-1]
    assert told.body["text"] == "I only answer people of the organisations I was set up for."
    assert stack.generation.calls == []
    assert stack.failures().get("foreign_tenant", 0) == before + 1


def test_a_channel_member_without_a_copilot_account_leaves_the_channel_no_document(stack: TeamsStack) -> None:
    """Dave (another organisation's address, no copilot account) might read anything he is shown, so the
    channel gets no document, not even one for everyone at acme; alice gets her answer personally."""
    stack.microsoft.channel_members = ["29:alice", "29:bob", "29:dave"]
    assert stack.send(stack.message("29:alice", FINANCE_QUESTION)).status_code in (200, 201)
    wait_for(lambda: len(_cards(stack.microsoft.sent())) == 2, what="both cards")
    assert [c.audience for c in stack.generation.calls] == [[]], "one question, with alice's rights alone"
    channel_card = json.dumps(_cards([c for c in stack.microsoft.sent() if CHANNEL in c.path]))
    assert "not everyone here can be checked" in channel_card and not shows_secret_figure(channel_card)
    private_card = json.dumps(_cards(stack.microsoft.sent_personally()))
    assert "412,000" in private_card and "outside your organisation" in private_card


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
    assert channel_ask.audience == [BOB_ACL], "bob may read less"
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


def test_unknown_users_asking_in_a_channel_are_told_in_a_personal_chat(stack: TeamsStack) -> None:
    stack.send(stack.message("29:dave", FINANCE_QUESTION, thread="dave-asks"))
    told = wait_for(lambda: stack.microsoft.sent_personally(), what="personal reply")[-1]
    assert "dave@elsewhere.example" in told.body["text"] and "service desk" in told.body["text"]
    opened = [c for c in stack.microsoft.calls if c.method == "POST" and c.path == "/v3/conversations"]
    assert opened[-1].body["members"] == [{"id": "29:dave"}]
    time.sleep(0.3)
    in_channel = json.dumps([c.body for c in stack.microsoft.sent_in(f"{CHANNEL};messageid=dave-asks")])
    assert "dave@elsewhere.example" not in in_channel, "the channel never sees it"
    assert stack.generation.calls == []


def test_a_timeout_gets_a_visible_reply_and_is_counted(stack: TeamsStack) -> None:
    before = stack.failures().get("timeout", 0)
    assert stack.send(stack.message("29:alice", SLOW_QUESTION, thread="slow")).status_code in (200, 201)
    told = wait_for(
        lambda: [c for c in stack.microsoft.sent_personally() if "longer than" in c.body.get("text", "")],
        timeout_s=20,
        what="timeout reply",
    )
    assert "2 seconds" in told[-1].body["text"] and "reference" in told[-1].body["text"]
    in_channel = stack.microsoft.sent_in(f"{CHANNEL};messageid=slow")
    assert in_channel[0].body["text"] == "Looking that up…"
    assert in_channel[-1].method == "PUT" and in_channel[-1].body["text"] == f"⚠️ {PROBLEM_IN_CHANNEL}"
    assert "longer than" not in json.dumps([c.body for c in in_channel])
    assert stack.failures().get("timeout", 0) == before + 1


def test_a_turn_that_fails_gets_a_reply_and_is_counted(stack: TeamsStack) -> None:
    """The bot's store cannot be read for this channel: the turn fails before the core has the question."""
    broken = "19:broken@thread.tacv2"
    with contextlib.closing(sqlite3.connect(stack.database)) as db:
        db.execute(
            "INSERT INTO channel_config VALUES ('teams', ?, 1, 'channel', 'not json', 'x', 0)", (broken,)
        )
        db.commit()
    before = stack.failures().get("internal", 0)
    reply = stack.send(stack.message("29:alice", VACATION_QUESTION, channel_id=broken))
    assert reply.status_code in (200, 201), "Teams is not handed a bare 500"
    told = wait_for(lambda: stack.microsoft.sent_personally(), what="error reply")[-1]
    assert "Something went wrong" in told.body["text"] and "reference" in told.body["text"]
    assert "Expecting value" not in told.body["text"], "no exception text reaches the user"
    assert stack.failures().get("internal", 0) == before + 1
    assert stack.generation.calls == [] and not stack.microsoft.sent_in(f"{broken};messageid=1700")


def test_feedback_from_someone_teams_will_not_describe_gets_an_apology_and_is_counted(
    stack: TeamsStack,
) -> None:
    before = stack.failures().get("feedback", 0)
    value = {"copilot_feedback": "positive", "interaction_id": "teams-interaction-2"}
    reply = stack.send(stack.message("29:erin", "", conversation_type="personal", value=value))
    assert reply.status_code in (200, 201)
    told = wait_for(lambda: stack.microsoft.sent(), what="apology")[-1]
    assert told.body["text"].startswith("Sorry, I couldn't record your feedback.")
    assert "reference" in told.body["text"] and "Forbidden" not in told.body["text"]
    assert stack.failures().get("feedback", 0) == before + 1


def test_follow_ups_in_a_reply_chain_continue_the_conversation(stack: TeamsStack) -> None:
    def ask(text: str, thread: str, asks: int) -> None:
        stack.send(stack.message("29:alice", text, thread=thread))
        wait_for(lambda: len(stack.generation.calls) == asks, what=f"ask {asks}")
        wait_for(lambda: _cards(stack.microsoft.sent_in(f"{CHANNEL};messageid={thread}")), what="answer")

    ask(VACATION_QUESTION, "chain-1", 1)
    ask("And vacation days for part-timers?", "chain-1", 2)
    ask(VACATION_QUESTION, "chain-2", 3)
    opening, follow_up, elsewhere = stack.generation.calls
    assert opening.conversation_id == "" and follow_up.conversation_id, "a reply continues its chain"
    assert elsewhere.conversation_id == "", "a new chain starts a new conversation"
    assert all(c.audience == [BOB_ACL] for c in stack.generation.calls)


def test_a_disabled_channel_says_so_and_asks_nothing(stack: TeamsStack) -> None:
    quiet = "19:quiet@thread.tacv2"
    stack.bots.store.set_channel_config("teams", quiet, ChannelConfig(enabled=False), updated_by="test")
    stack.send(stack.message("29:alice", FINANCE_QUESTION, channel_id=quiet))
    reply = wait_for(lambda: stack.microsoft.sent_in(f"{quiet};messageid=1700"), what="reply")[-1]
    assert reply.body["text"] == DISABLED
    time.sleep(0.3)
    assert stack.generation.calls == []


def test_a_private_channel_config_answers_only_in_a_personal_chat(stack: TeamsStack) -> None:
    private = "19:private@thread.tacv2"
    config = ChannelConfig(visibility="ephemeral")
    stack.bots.store.set_channel_config("teams", private, config, updated_by="test")
    stack.send(stack.message("29:alice", FINANCE_QUESTION, channel_id=private))
    card = wait_for(lambda: _cards(stack.microsoft.sent_personally()), what="personal answer")[-1]
    assert "412,000" in json.dumps(card)
    assert stack.generation.calls[0].audience == [], "only the asker sees it: only the asker's rights count"
    time.sleep(0.3)
    assert stack.microsoft.sent_in(f"{private};messageid=1700") == [], "nothing is posted in the channel"


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


def test_team_owners_configure_a_channel_with_the_config_command(stack: TeamsStack) -> None:
    settings = "19:settings@thread.tacv2"

    def say(sender: str, text: str) -> str:
        stack.microsoft.reset()
        stack.send(stack.message(sender, text, channel_id=settings))
        replies = wait_for(lambda: stack.microsoft.sent_in(f"{settings};messageid=1700"), what=text)
        return str(replies[-1].body["text"])

    assert say("29:bob", "config enabled off").startswith("Only the team's owners")
    assert "is on" in say("29:bob", "config")
    assert say("29:alice", "config enabled off").startswith("Updated. The copilot is off")
    assert say("29:alice", "config visibility sometimes").startswith("Usage:")
    updated = say("29:alice", "config sources /finance")
    assert "is off" in updated and "documents under `/finance`" in updated
    assert say("29:bob", FINANCE_QUESTION) == DISABLED
    assert stack.generation.calls == [], "config commands are not questions"
    stored = stack.bots.store.channel_config("teams", settings)
    assert stored == ChannelConfig(False, "channel", ("/finance",))
