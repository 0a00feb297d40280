"""The bots' small state and caches: channel config, thread conversations, redeliveries, identity TTLs,
feedback events."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from copilot.auth import Principal
from copilot.errors import InvalidInput
from copilot.events.v1 import events_pb2
from services.bots.feedback import FeedbackRecorder
from services.bots.generation_client import link_template
from services.bots.identity import CachedDirectory, KeycloakUser
from services.bots.store import BotStore, ChannelConfig

ALICE = KeycloakUser("id-alice", "alice", "alice@acme.example", ("finance", "travel"))


def _store(now: list[float]) -> BotStore:
    # SQLite's in-memory database: no file is written.
    return BotStore(Path(":memory:"), conversation_idle_s=60, clock=lambda: now[0])


def test_channel_config_defaults_and_round_trips() -> None:
    store = _store([0.0])
    assert store.channel_config("slack", "C1") == ChannelConfig(True, "channel", ())
    wanted = ChannelConfig(False, "ephemeral", ("https://wiki/", "finance/"))
    store.set_channel_config("slack", "C1", wanted, updated_by="U1")
    assert store.channel_config("slack", "C1") == wanted
    assert store.channel_config("teams", "C1") == ChannelConfig(), "platforms do not share channel ids"


def test_thread_conversations_expire_when_idle() -> None:
    now = [0.0]
    store = _store(now)
    store.remember_conversation("slack|T:C:1|u|channel", "conv-1")
    now[0] = 59
    assert store.conversation("slack|T:C:1|u|channel") == "conv-1"
    now[0] = 200
    assert store.conversation("slack|T:C:1|u|channel") == ""


def test_each_event_is_handled_the_first_time_only() -> None:
    now = [0.0]
    store = _store(now)
    assert store.first_time("Ev1") and not store.first_time("Ev1") and store.first_time("Ev2")
    now[0] = 7200
    assert store.first_time("Ev1"), "old ids are forgotten"


@dataclass
class CountingDirectory:
    users: dict[str, KeycloakUser]
    lookups: list[str] = field(default_factory=list)

    def user_by_email(self, email: str) -> KeycloakUser | None:
        self.lookups.append(email)
        return self.users.get(email)


def test_identities_are_cached_and_unknown_ones_expire_sooner() -> None:
    now = [0.0]
    inner = CountingDirectory({"alice@acme.example": ALICE})
    directory = CachedDirectory(inner, ttl_s=300, unknown_ttl_s=30, clock=lambda: now[0])
    assert directory.user_by_email("Alice@ACME.example ") == ALICE
    assert directory.user_by_email("nobody@acme.example") is None
    now[0] = 100
    directory.user_by_email("alice@acme.example")
    directory.user_by_email("nobody@acme.example")
    assert inner.lookups == ["alice@acme.example", "nobody@acme.example", "nobody@acme.example"]
    now[0] = 400
    directory.user_by_email("alice@acme.example")
    assert inner.lookups[-1] == "alice@acme.example"


def test_acl_entries_match_what_the_services_derive_from_a_token() -> None:
    principal = Principal(subject=ALICE.id, username="alice", tenant="acme", groups=ALICE.groups)
    assert ALICE.acl_entries() == principal.acl_principals()


@dataclass
class Events:
    published: list[events_pb2.FeedbackEvent] = field(default_factory=list)

    def publish(self, event: events_pb2.FeedbackEvent) -> None:
        self.published.append(event)


def test_feedback_events_carry_the_same_pseudonym_as_interactions() -> None:
    events = Events()
    recorder = FeedbackRecorder(events, b"key")
    event = recorder.record(ALICE, "iid-1", "report", "slack", comment="wrong number")
    assert events.published == [event]
    assert event.rating == events_pb2.FEEDBACK_RATING_REPORTED and event.comment == "wrong number"
    assert event.user_id == Principal(subject="id-alice", username="alice", tenant="").pseudonym(b"key")
    assert event.event_id and event.occurred_at.seconds > 0


@pytest.mark.parametrize(
    ("interaction_id", "rating"), [("", "positive"), ("a b<script>", "positive"), ("i", "meh")]
)
def test_feedback_rejects_what_is_not_an_answer_or_a_rating(interaction_id: str, rating: str) -> None:
    events = Events()
    with pytest.raises(InvalidInput):
        FeedbackRecorder(events, b"key").record(ALICE, interaction_id, rating, "slack")
    assert events.published == []


def test_document_links() -> None:
    assert link_template("")("https://wiki/page") == "https://wiki/page"
    assert link_template("")("finance/memo.md") == ""
    assert link_template("https://docs.acme.example/{uri}")("finance/memo.md") == (
        "https://docs.acme.example/finance/memo.md"
    )
