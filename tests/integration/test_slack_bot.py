"""The Slack bot over real HTTP: Slack requests are signed with the signing secret and sent to the running
bot endpoint; the bot's Web API calls go to a local stand-in of Slack's API that records them. Everything
else is real: Bolt's signature checks, the dev Keycloak stand-in's admin API and token exchange, RS256
tokens verified by a gRPC server, Tansu for the feedback events. Only Slack's own servers are replaced.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from kafka import KafkaConsumer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from copilot.auth import Principal
from copilot.events.v1 import events_pb2
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from services.bots.core import PROBLEM_IN_CHANNEL
from services.bots.server import Bots, build
from services.bots.settings import BotsSettings, KeycloakClientSettings, SlackSettings
from tests.conftest import free_port, shows_secret_figure
from tests.integration.bots_standins import (
    BOT_CLIENT,
    FINANCE_QUESTION,
    REFUSAL,
    SLOW_QUESTION,
    VACATION_QUESTION,
    AclGeneration,
    FakeSlackApi,
    failure_counts,
    slack_signature,
    slack_user,
    start_generation,
    start_issuer,
    wait_for,
)

SIGNING_SECRET = "slack-signing-secret-for-tests"
ALICE_ACL = ["everyone", "group:finance", "user:alice"]
BOB_ACL = ["everyone", "group:engineering", "user:bob"]
PSEUDONYM_KEY = b"bots-test-pseudonym-key"


@dataclass
class SlackStack:
    url: str
    slack: FakeSlackApi
    generation: AclGeneration
    bots: Bots
    metrics: InMemoryMetricReader
    topic: str
    bootstrap: str
    issuer: Any
    publisher: EventPublisher
    settings: BotsSettings

    def post(
        self, body: str, content_type: str, timestamp: int | None = None, secret: str = SIGNING_SECRET
    ) -> Any:
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": slack_signature(secret, ts, body),
        }
        return requests.post(f"{self.url}/slack/events", data=body.encode(), headers=headers, timeout=10)

    def event(self, event: dict[str, Any], event_id: str | None = None, **kwargs: Any) -> Any:
        envelope = {
            "token": "unused-legacy-token",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10]}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}],
            "event": event,
        }
        return self.post(json.dumps(envelope), "application/json", **kwargs)

    def mention(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> str:
        ts = f"{time.time():.6f}"
        event = {"type": "app_mention", "user": user, "channel": channel, "text": f"<@UBOT> {text}", "ts": ts}
        if thread_ts:
            event["thread_ts"] = thread_ts
        assert self.event(event).status_code == 200
        return ts

    def command(self, user: str, channel: str, text: str) -> Any:
        form = {"command": "/copilot", "text": text, "user_id": user, "channel_id": channel, "team_id": "T1"}
        form |= {"trigger_id": "t1", "response_url": "http://127.0.0.1:9/unused", "token": "unused"}
        return self.post(urlencode(form), "application/x-www-form-urlencoded")

    def failures(self) -> dict[str, int]:
        return failure_counts(self.metrics)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str) -> Iterator[SlackStack]:
    tmp = tmp_path_factory.mktemp("slack-bot")
    issuer, issuer_server = start_issuer(tmp)
    generation = AclGeneration(slow_s=4.0)
    grpc_server, target = start_generation(issuer, generation)
    slack = FakeSlackApi(
        users={
            "UALICE": slack_user("UALICE", "alice@acme.example"),
            "UBOB": slack_user("UBOB", "bob@acme.example"),
            "UCAROL": slack_user("UCAROL", "carol@acme.example"),
            "UDAVE": slack_user("UDAVE", "dave@elsewhere.example"),
            # Typed alice's address into her own profile; Slack never confirmed it.
            "UMALLORY": slack_user("UMALLORY", "alice@acme.example", is_email_confirmed=False),
            "UGUEST": slack_user("UGUEST", None, is_restricted=True),
            "UBOT": slack_user("UBOT", None, is_bot=True),
        },
        channels={
            "CSHARED": {"members": ["UBOT", "UALICE", "UBOB"]},
            "CFINANCE": {"members": ["UBOT", "UALICE"]},
            "CGUEST": {"members": ["UBOT", "UALICE", "UGUEST"]},
            "CCONFIG": {"members": ["UBOT", "UALICE", "UBOB", "UCAROL"], "creator": "UCAROL"},
            "CBROKEN": {"members": ["UBOT", "UALICE"]},
            "CLOCKED": {"members": ["UBOT", "UCAROL"], "creator": "UCAROL"},
        },
    )
    api_url = slack.start()
    topic = f"copilot.feedback.test-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    publisher = EventPublisher(kafka_bootstrap, Path(tmp) / "spool.sqlite")
    settings = BotsSettings(
        http_port=free_port(),
        generation_target=target,
        deadline_s=2.0,
        database=Path(tmp) / "bots.sqlite",
        pseudonym_key=SecretStr(PSEUDONYM_KEY.decode()),
        keycloak=KeycloakClientSettings(
            server_url=issuer.issuer.split("/realms/")[0] + "/",
            client_id=BOT_CLIENT.client_id,
            client_secret=SecretStr(BOT_CLIENT.secret),
        ),
        slack=SlackSettings(
            enabled=True,
            signing_secret=SecretStr(SIGNING_SECRET),
            bot_token=SecretStr("xoxb-test"),
            api_url=api_url,
            update_interval_s=0.0,
        ),
    )
    reader = InMemoryMetricReader()
    bots = build(
        settings,
        TopicPublisher(publisher, topic, key=lambda e: e.interaction_id),
        meter=MeterProvider(metric_readers=[reader]).get_meter("test"),
    )
    port = bots.http.start()
    yield SlackStack(
        f"http://127.0.0.1:{port}",
        slack,
        generation,
        bots,
        reader,
        topic,
        kafka_bootstrap,
        issuer,
        publisher,
        settings,
    )
    bots.stop()
    publisher.close()
    grpc_server.stop(0)
    slack.stop()
    issuer_server.shutdown()


@pytest.fixture(autouse=True)
def fresh(stack: SlackStack) -> None:
    stack.slack.reset()
    stack.generation.calls.clear()


def _texts(calls: list[Any]) -> str:
    return json.dumps([c.args for c in calls])


def _shown_in_channel(stack: SlackStack, channel: str) -> str:
    return _texts(stack.slack.called("chat.postMessage", channel=channel) + stack.slack.called("chat.update"))


def _sql(stack: SlackStack, statement: str) -> None:
    """Changes the bot's own SQLite store behind its back, the way a broken disk or a bad migration would."""
    with contextlib.closing(sqlite3.connect(stack.settings.database)) as db:
        db.execute(statement)
        db.commit()


def test_channel_answer_uses_only_what_every_member_may_read_and_the_asker_gets_theirs_privately(
    stack: SlackStack,
) -> None:
    ts = stack.mention("UALICE", "CSHARED", FINANCE_QUESTION)
    ephemeral = wait_for(lambda: stack.slack.called("chat.postEphemeral", user="UALICE"), what="ephemeral")[0]

    channel_ask, private_ask = stack.generation.calls
    assert channel_ask.username == "alice" and channel_ask.audience == [BOB_ACL]
    assert private_ask.username == "alice" and private_ask.audience == []
    # The question ran with alice's own token, obtained by the bot's token exchange, not the bot's rights.
    assert channel_ask.claims["azp"] == BOT_CLIENT.client_id and "finance" in str(
        channel_ask.claims["groups"]
    )

    placeholder = stack.slack.called("chat.postMessage", channel="CSHARED")
    assert len(placeholder) == 1 and placeholder[0].args["thread_ts"] == ts
    final = wait_for(
        lambda: [c for c in stack.slack.called("chat.update") if c.args.get("blocks")], what="final"
    )
    channel_view = _texts(placeholder + stack.slack.called("chat.update"))
    assert REFUSAL in channel_view and not shows_secret_figure(channel_view)
    assert "every member of this channel" in json.dumps(final[-1].args["blocks"])

    assert ephemeral.args["channel"] == "CSHARED" and ephemeral.args["thread_ts"] == ts
    private_view = json.dumps(ephemeral.args["blocks"])
    assert "412,000" in private_view
    assert "<https://docs.acme.example/finance/q3-2026-budget-memo.md|[1]>" in private_view
    assert "Only you can see this" in private_view


def test_a_member_with_fewer_rights_gets_the_refusal_and_nothing_private(stack: SlackStack) -> None:
    stack.mention("UBOB", "CSHARED", FINANCE_QUESTION)
    wait_for(lambda: len(stack.generation.calls) == 2, what="channel and private asks")
    assert stack.generation.calls[0].audience == [ALICE_ACL]
    final = wait_for(
        lambda: [c for c in stack.slack.called("chat.update") if c.args.get("blocks")], what="final"
    )
    assert REFUSAL in final[-1].args["text"]
    time.sleep(0.3)
    assert not stack.slack.called("chat.postEphemeral")
    assert not shows_secret_figure(_texts(stack.slack.calls))


def test_dm_streams_into_one_message_and_renders_sources_and_feedback(stack: SlackStack) -> None:
    event = {"type": "message", "channel_type": "im", "channel": "DALICE", "user": "UALICE"}
    assert stack.event({**event, "text": FINANCE_QUESTION, "ts": f"{time.time():.6f}"}).status_code == 200
    final = wait_for(
        lambda: [c for c in stack.slack.called("chat.update") if c.args.get("blocks")], what="final"
    )
    assert stack.generation.calls[0].audience == [], "a DM uses the asker's rights alone"

    placeholder = stack.slack.called("chat.postMessage", channel="DALICE")
    assert len(placeholder) == 1 and placeholder[0].args.get("thread_ts") is None
    updates = stack.slack.called("chat.update", ts=placeholder[0].args.get("ts") or final[-1].args["ts"])
    streamed = [u for u in updates if not u.args.get("blocks")]
    assert streamed and streamed[0].args["text"].startswith("According to"), (
        "partial answers update the message"
    )

    blocks = final[-1].args["blocks"]
    kinds = [b["type"] for b in blocks]
    assert kinds[0] == "section" and "actions" in kinds
    sources = next(b for b in blocks if b.get("block_id") == "copilot_sources")
    assert "<https://docs.acme.example/finance/q3-2026-budget-memo.md|Q3 2026 budget memo>" in json.dumps(
        sources
    )
    buttons = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in buttons] == [
        "copilot_feedback_positive",
        "copilot_feedback_negative",
        "copilot_feedback_report",
    ]
    assert len({b["value"] for b in buttons}) == 1 and buttons[0]["value"]


def test_follow_ups_in_a_thread_continue_the_conversation(stack: SlackStack) -> None:
    first = stack.mention("UALICE", "CFINANCE", FINANCE_QUESTION)
    wait_for(lambda: len(stack.generation.calls) == 1, what="first answer")
    wait_for(
        lambda: [c for c in stack.slack.called("chat.update") if c.args.get("blocks")], what="first final"
    )
    stack.mention("UALICE", "CFINANCE", "And the Q4 budget?", thread_ts=first)
    wait_for(lambda: len(stack.generation.calls) == 2, what="follow-up")
    stack.mention("UALICE", "CFINANCE", FINANCE_QUESTION)
    wait_for(lambda: len(stack.generation.calls) == 3, what="new thread")
    opening, follow_up, elsewhere = stack.generation.calls
    assert opening.conversation_id == "" and follow_up.conversation_id
    assert elsewhere.conversation_id == "", "a new thread starts a new conversation"
    assert opening.audience == [] and "412,000" in _texts(stack.slack.calls), "alice alone: nothing narrows"


def test_unknown_users_are_told_privately_how_to_get_access(stack: SlackStack) -> None:
    stack.mention("UDAVE", "CSHARED", FINANCE_QUESTION)
    reply = wait_for(lambda: stack.slack.called("chat.postEphemeral", user="UDAVE"), what="reply")[0]
    assert reply.args["channel"] == "CSHARED"
    assert "dave@elsewhere.example" in reply.args["text"] and "service desk" in reply.args["text"]
    time.sleep(0.3)
    assert "dave@elsewhere.example" not in _shown_in_channel(stack, "CSHARED"), "the channel never sees it"
    assert stack.generation.calls == []


def test_an_unconfirmed_slack_email_is_not_trusted(stack: SlackStack) -> None:
    event = {"type": "message", "channel_type": "im", "channel": "DMALLORY", "user": "UMALLORY"}
    assert stack.event({**event, "text": FINANCE_QUESTION, "ts": f"{time.time():.6f}"}).status_code == 200
    reply = wait_for(lambda: stack.slack.called("chat.postMessage", channel="DMALLORY"), what="reply")[0]
    assert "verified email" in reply.args["text"] and "service desk" in reply.args["text"]
    time.sleep(0.3)
    assert stack.generation.calls == [], "nothing is asked with alice's rights"
    assert not shows_secret_figure(_texts(stack.slack.calls))


def test_a_guest_in_the_channel_leaves_it_no_document_and_the_asker_gets_the_answer_privately(
    stack: SlackStack,
) -> None:
    """A guest (no email Slack vouches for) may be from anywhere, so even documents for everyone in the
    organisation stay out of the channel; the bot user in it reads nothing and does not count."""
    stack.mention("UALICE", "CGUEST", VACATION_QUESTION)
    ephemeral = wait_for(lambda: stack.slack.called("chat.postEphemeral", user="UALICE"), what="ephemeral")[0]
    assert [c.audience for c in stack.generation.calls] == [[]], "one question, with alice's rights alone"
    assert "25 days" in json.dumps(ephemeral.args["blocks"])
    channel_view = _texts(stack.slack.called("chat.postMessage") + stack.slack.called("chat.update"))
    assert "25 days" not in channel_view and "not everyone here can be checked" in channel_view


def test_bad_signatures_and_replayed_timestamps_are_rejected(stack: SlackStack) -> None:
    event = {
        "type": "app_mention",
        "user": "UALICE",
        "channel": "CFINANCE",
        "text": "<@UBOT> hi",
        "ts": "1.0",
    }
    assert stack.event(event, secret="not-the-signing-secret").status_code == 401
    assert stack.event(event, timestamp=int(time.time()) - 600).status_code == 401
    unsigned = requests.post(
        f"{stack.url}/slack/events", json={"type": "event_callback", "event": event}, timeout=5
    )
    assert unsigned.status_code == 401
    time.sleep(0.3)
    assert stack.generation.calls == []
    assert [c.method for c in stack.slack.calls if c.method != "auth.test"] == []


def test_a_redelivered_event_is_answered_once(stack: SlackStack) -> None:
    event = {
        "type": "app_mention",
        "user": "UALICE",
        "channel": "CFINANCE",
        "text": f"<@UBOT> {VACATION_QUESTION}",
        "ts": f"{time.time():.6f}",
    }
    assert stack.event(event, event_id="EvSameOne").status_code == 200
    assert stack.event(event, event_id="EvSameOne").status_code == 200
    wait_for(lambda: stack.generation.calls, what="answer")
    time.sleep(0.5)
    assert len(stack.generation.calls) == 1


def test_feedback_buttons_publish_feedback_events(stack: SlackStack) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": "UALICE"},
        "api_app_id": "A1",
        "token": "unused",
        "trigger_id": "t2",
        "channel": {"id": "CFINANCE"},
        "container": {"type": "message", "channel_id": "CFINANCE", "message_ts": "1.1"},
        "message": {"ts": "1.1", "thread_ts": "1.0"},
        "actions": [
            {
                "type": "button",
                "action_id": "copilot_feedback_report",
                "block_id": "copilot_feedback",
                "value": "interaction-123",
                "action_ts": "1.2",
            }
        ],
    }
    reply = stack.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")
    assert reply.status_code == 200
    thanks = wait_for(lambda: stack.slack.called("chat.postEphemeral", user="UALICE"), what="thanks")[0]
    assert "reported" in thanks.args["text"] and thanks.args["thread_ts"] == "1.0"

    assert stack.publisher.flush(30), "the feedback event reaches the broker"
    consumer = KafkaConsumer(
        stack.topic,
        bootstrap_servers=stack.bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4().hex[:6]}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        consumer_timeout_ms=20_000,
    )
    record = next(iter(consumer))
    consumer.close()
    event = events_pb2.FeedbackEvent.FromString(record.value)
    assert record.key == b"interaction-123"
    assert event.interaction_id == "interaction-123" and event.channel == "slack"
    assert event.rating == events_pb2.FEEDBACK_RATING_REPORTED
    alice = stack.issuer.users["alice"]
    expected = Principal(subject=alice.subject, username="alice", tenant="").pseudonym(PSEUDONYM_KEY)
    assert event.user_id == expected


def test_a_timeout_gets_a_visible_reply_and_is_counted(stack: SlackStack) -> None:
    before = stack.failures().get("timeout", 0)
    stack.mention("UALICE", "CFINANCE", SLOW_QUESTION)
    told = wait_for(
        lambda: [
            c
            for c in stack.slack.called("chat.postEphemeral", user="UALICE")
            if "longer than" in c.args.get("text", "")
        ],
        timeout_s=20,
        what="timeout reply",
    )
    assert "2 seconds" in told[-1].args["text"] and "reference" in told[-1].args["text"]
    placeholder = [c for c in stack.slack.called("chat.update", channel="CFINANCE") if c.args.get("blocks")]
    assert placeholder[-1].args["text"] == PROBLEM_IN_CHANNEL, "the channel is told the asker was told"
    assert "longer than" not in _shown_in_channel(stack, "CFINANCE")
    assert stack.failures().get("timeout", 0) == before + 1


def test_a_broken_store_before_the_question_is_asked_still_gets_a_reply(stack: SlackStack) -> None:
    _sql(stack, "INSERT INTO channel_config VALUES ('slack', 'CBROKEN', 1, 'channel', 'not json', 'x', 0)")
    before = stack.failures().get("internal", 0)
    stack.mention("UALICE", "CBROKEN", VACATION_QUESTION)
    told = wait_for(lambda: stack.slack.called("chat.postEphemeral", user="UALICE"), what="error reply")[0]
    assert "Something went wrong" in told.args["text"] and "reference" in told.args["text"]
    assert "Expecting value" not in told.args["text"], "no exception text reaches the user"
    assert stack.failures().get("internal", 0) == before + 1
    assert stack.generation.calls == []


def test_a_failed_config_write_gets_a_reply_and_is_counted(stack: SlackStack) -> None:
    _sql(
        stack,
        "CREATE TRIGGER IF NOT EXISTS clocked BEFORE INSERT ON channel_config WHEN NEW.channel = 'CLOCKED'"
        " BEGIN SELECT RAISE(ABORT, 'the disk is read-only'); END",
    )
    before = stack.failures().get("internal", 0)
    reply = stack.command("UCAROL", "CLOCKED", "config enabled off")
    assert reply.status_code == 200
    assert reply.text.startswith("Sorry, that didn't work.") and "reference" in reply.text
    assert "read-only" not in reply.text
    assert stack.failures().get("internal", 0) == before + 1
    assert "is on" in stack.command("UCAROL", "CLOCKED", "config").text, "nothing was changed"


def test_channel_config_command_and_ephemeral_answers(stack: SlackStack) -> None:
    denied = stack.command("UBOB", "CCONFIG", "config visibility ephemeral")
    assert "Only workspace admins" in denied.text
    updated = stack.command("UCAROL", "CCONFIG", "config visibility ephemeral")
    assert updated.text.startswith("Updated.") and "only to the asker" in updated.text
    sources = stack.command("UCAROL", "CCONFIG", "config sources /finance /wiki/finance")
    assert sources.text.startswith("Updated.")
    # They are enforced (they reach retrieval as AnswerRequest.uri_prefixes, checked below), and say so.
    assert "sources: documents under `/finance`, `/wiki/finance`." in sources.text
    assert "not yet enforced" not in sources.text

    stack.mention("UALICE", "CCONFIG", FINANCE_QUESTION)
    private = wait_for(lambda: stack.slack.called("chat.postEphemeral", user="UALICE"), what="ephemeral")[0]
    assert "412,000" in private.args["text"]
    assert stack.generation.calls[0].audience == [], (
        "only the asker sees it, so only the asker's rights count"
    )
    assert stack.generation.calls[0].uri_prefixes == ["/finance", "/wiki/finance"]
    assert not stack.slack.called("chat.postMessage", channel="CCONFIG")

    assert "is off" in stack.command("UCAROL", "CCONFIG", "config enabled off").text
    stack.slack.reset()
    stack.mention("UALICE", "CCONFIG", FINANCE_QUESTION)
    off = wait_for(lambda: stack.slack.called("chat.postEphemeral", user="UALICE"), what="disabled notice")[0]
    assert "turned off" in off.args["text"] and len(stack.generation.calls) == 1
    shown = stack.command("UBOB", "CCONFIG", "config").text
    assert "is off" in shown


def test_socket_mode_receives_events_over_a_websocket_and_acknowledges_them(
    stack: SlackStack, tmp_path: Path
) -> None:
    """Socket Mode: the bot dials out (apps.connections.open, then a WebSocket) instead of being called.
    A local WebSocket server plays Slack's end: it says hello, pushes one event envelope and waits for the
    bot's acknowledgement."""
    acks: list[dict[str, Any]] = []
    event = {
        "type": "app_mention",
        "user": "UALICE",
        "channel": "CFINANCE",
        "text": f"<@UBOT> {VACATION_QUESTION}",
        "ts": f"{time.time():.6f}",
    }
    envelope = {
        "envelope_id": "env-1",
        "type": "events_api",
        "accepts_response_payload": False,
        "payload": {"type": "event_callback", "team_id": "T1", "event_id": "EvSocket1", "event": event},
    }

    def slack_end(websocket: ServerConnection) -> None:
        websocket.send(
            json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}})
        )
        websocket.send(json.dumps(envelope))
        with contextlib.suppress(ConnectionClosed):  # the bot hangs up when the test stops it
            for message in websocket:
                acks.append(json.loads(message))

    with serve(slack_end, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        stack.slack.socket_url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/link"
        socket_settings = stack.settings.model_copy(
            update={
                "http_port": free_port(),
                "database": tmp_path / "socket.sqlite",
                "slack": stack.settings.slack.model_copy(
                    update={"mode": "socket", "app_token": SecretStr("xapp-test")}
                ),
            }
        )
        bots = build(
            socket_settings, TopicPublisher(stack.publisher, stack.topic, key=lambda e: e.interaction_id)
        )
        try:
            wait_for(lambda: {"envelope_id": "env-1"} in acks, what="the acknowledgement")
            final = wait_for(
                lambda: [c for c in stack.slack.called("chat.update") if c.args.get("blocks")],
                what="the answer",
            )
            assert "25 days" in final[-1].args["text"]
            assert stack.slack.called("apps.connections.open")
            assert [c.question for c in stack.generation.calls] == [VACATION_QUESTION]
        finally:
            bots.stop()
            server.shutdown()
