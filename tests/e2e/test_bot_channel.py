"""A shared Slack channel end to end: two people with different rights ask the same question.

The whole copilot stack runs for real (`copilot up`: Tansu, the dev issuer, the store host, ingest,
retrieval, generation on Ray Serve with a packaged model, the monitor) and ingests the sample corpus. The
bot runs in this process against it: signed Slack requests go to its HTTP endpoint, and its Keycloak
stand-in (the dev issuer with the bot's client, signing with the stack's key and issuer) serves the admin
lookups and token exchange. Only Slack's own Web API is a local recorder.

What each person sees: alice (finance) asks in a channel that bob (engineering) is in; the channel answer
may use only documents both may read, so it is the refusal, and alice gets her own answer privately. Bob
asking the same gets only the refusal. In a DM, alice's own rights apply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from copilot.devissuer import DevIssuer, load_or_create_key, load_users, serve_in_thread
from copilot.kafka import EventPublisher, TopicPublisher, ensure_topics
from copilot.launcher import Stack
from copilot.ports import free_base_port, free_port
from services.bots.server import Bots, build
from services.bots.settings import BotsSettings, KeycloakClientSettings, SlackSettings
from tests.conftest import REPO, SAMPLE_CORPUS, shows_secret_figure
from tests.integration.bots_standins import (
    BOT_CLIENT,
    FINANCE_QUESTION,
    FakeSlackApi,
    slack_signature,
    slack_user,
    wait_for,
)

pytestmark = pytest.mark.slow

# The refusal path needs no model; the 135M model is enough for the private answer to be a non-refusal.
E2E_MODEL = os.environ.get("COPILOT_E2E_BOT_MODEL", "smollm2-135m")
SIGNING_SECRET = "e2e-signing-secret"
REFUSAL_WORDS = "do not cover"


def _copilot(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "copilot.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    home = tmp_path_factory.mktemp("bot-e2e-home")
    env = {
        **os.environ,
        "COPILOT_HOME": str(home),
        "COPILOT_BASE_PORT": str(free_base_port()),
        "COPILOT_KAFKA_PORT": str(free_port()),
        "COPILOT_ISSUER_PORT": str(free_port()),
        "COPILOT_REVIEW_PORT": str(free_port()),
        "COPILOT_MODEL": E2E_MODEL,
        "COPILOT_LOG_FORMAT": "text",
    }
    try:
        up = _copilot(env, "up")
        assert up.returncode == 0, up.stderr
        ingest = _copilot(env, "ingest", str(SAMPLE_CORPUS))
        assert ingest.returncode == 0 and "0 failed" in ingest.stderr, ingest.stderr
        loaded = Stack.load(home)
        assert loaded is not None
        yield loaded, env
    finally:
        _copilot(env, "down", timeout=120)


@pytest.fixture(scope="module")
def bot(
    stack: tuple[Stack, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, FakeSlackApi]]:
    running, env = stack
    home = Path(running.home)
    tmp = tmp_path_factory.mktemp("bot-e2e")
    # The stack's issuer has no bot client; this one adds it, with the same key and issuer name, so the
    # services accept the user tokens it hands out by token exchange.
    port = free_port()
    keycloak = DevIssuer(
        running.issuer,
        running.audience,
        load_or_create_key(home / "issuer" / "key.pem"),
        load_users(Path(running.users_file)),
        {BOT_CLIENT.client_id: BOT_CLIENT},
    )
    keycloak_server = serve_in_thread(keycloak, "127.0.0.1", port)
    slack = FakeSlackApi(
        users={
            "UALICE": slack_user("UALICE", "alice@acme.example"),
            "UBOB": slack_user("UBOB", "bob@acme.example"),
        },
        channels={"CSHARED": {"members": ["UBOT", "UALICE", "UBOB"]}},
    )
    api_url = slack.start()
    bootstrap = f"127.0.0.1:{env['COPILOT_KAFKA_PORT']}"
    topic = "copilot.feedback.v1"
    ensure_topics(bootstrap, [topic])
    publisher = EventPublisher(bootstrap, tmp / "spool.sqlite")
    settings = BotsSettings(
        http_port=free_port(),
        generation_target=running.endpoint("generation"),
        deadline_s=300,
        database=tmp / "bots.sqlite",
        keycloak=KeycloakClientSettings(
            server_url=f"http://127.0.0.1:{port}/",
            client_id=BOT_CLIENT.client_id,
            client_secret=SecretStr(BOT_CLIENT.secret),
        ),
        slack=SlackSettings(
            enabled=True,
            signing_secret=SecretStr(SIGNING_SECRET),
            bot_token=SecretStr("xoxb-e2e"),
            api_url=api_url,
            update_interval_s=0.5,
        ),
    )
    bots: Bots = build(settings, TopicPublisher(publisher, topic, key=lambda e: e.interaction_id))
    bot_url = f"http://127.0.0.1:{bots.http.start()}"
    yield bot_url, slack
    bots.stop()
    publisher.close()
    slack.stop()
    keycloak_server.shutdown()


def _mention(bot_url: str, user: str, channel: str, text: str) -> str:
    ts = f"{time.time():.6f}"
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "api_app_id": "A1",
            "event_id": f"Ev{uuid.uuid4().hex[:10]}",
            "event_time": int(time.time()),
            "event": {
                "type": "app_mention",
                "user": user,
                "channel": channel,
                "text": f"<@UBOT> {text}",
                "ts": ts,
            },
        }
    )
    now = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": slack_signature(SIGNING_SECRET, now, body),
    }
    assert requests.post(f"{bot_url}/slack/events", data=body, headers=headers, timeout=10).status_code == 200
    return ts


def _everything_shown_to_channel(slack: FakeSlackApi, channel: str) -> str:
    return json.dumps(
        [
            c.args
            for c in slack.calls
            if c.method in ("chat.postMessage", "chat.update") and c.args.get("channel") == channel
        ]
    )


def test_each_member_sees_only_what_everyone_in_the_channel_may_read(bot: tuple[str, FakeSlackApi]) -> None:
    bot_url, slack = bot

    # alice (finance) asks in the channel bob is in.
    slack.reset()
    thread = _mention(bot_url, "UALICE", "CSHARED", FINANCE_QUESTION)
    private = wait_for(
        lambda: slack.called("chat.postEphemeral", user="UALICE"),
        timeout_s=300,
        what="alice's private answer",
    )
    wait_for(
        lambda: [c for c in slack.called("chat.update", channel="CSHARED") if c.args.get("blocks")],
        timeout_s=60,
        what="the channel answer",
    )
    channel_view = _everything_shown_to_channel(slack, "CSHARED")
    assert REFUSAL_WORDS in channel_view, "the channel answer may use only what bob may read too"
    assert not shows_secret_figure(channel_view) and "budget-memo" not in channel_view
    assert private[0].args["thread_ts"] == thread and "Only you can see this" in json.dumps(
        private[0].args["blocks"]
    )
    assert REFUSAL_WORDS not in private[0].args["text"], "with her own rights alice gets an answer"

    # bob (engineering) asks the same: the refusal, and nothing private.
    slack.reset()
    _mention(bot_url, "UBOB", "CSHARED", FINANCE_QUESTION)
    wait_for(
        lambda: [c for c in slack.called("chat.update", channel="CSHARED") if c.args.get("blocks")],
        timeout_s=300,
        what="bob's channel answer",
    )
    time.sleep(2)
    assert not slack.called("chat.postEphemeral")
    shown_to_bob = json.dumps([c.args for c in slack.calls])
    assert REFUSAL_WORDS in shown_to_bob and not shows_secret_figure(shown_to_bob)


def test_a_dm_uses_the_askers_own_rights(bot: tuple[str, FakeSlackApi]) -> None:
    bot_url, slack = bot
    slack.reset()
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T1",
            "event_id": f"Ev{uuid.uuid4().hex[:10]}",
            "event": {
                "type": "message",
                "channel_type": "im",
                "channel": "DALICE",
                "user": "UALICE",
                "text": FINANCE_QUESTION,
                "ts": f"{time.time():.6f}",
            },
        }
    )
    now = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": slack_signature(SIGNING_SECRET, now, body),
    }
    assert requests.post(f"{bot_url}/slack/events", data=body, headers=headers, timeout=10).status_code == 200
    final = wait_for(
        lambda: [c for c in slack.called("chat.update", channel="DALICE") if c.args.get("blocks")],
        timeout_s=300,
        what="the DM answer",
    )[-1]
    assert REFUSAL_WORDS not in final.args["text"]
    assert any(b["type"] == "actions" for b in final.args["blocks"]), "the answer can be rated"
