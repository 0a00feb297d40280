"""The bots' platform-independent core: audiences, the private fallback, and never staying silent.

The core talks to its collaborators through small Protocols; here they are in-memory: a directory of
Keycloak users, a token source, a generation that answers from ACL-tagged facts, and a recording sink.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from copilot.errors import DependencyUnavailable, InvalidInput, PermissionDenied
from services.bots.core import (
    OUTSIDERS_IN_CHANNEL,
    OUTSIDERS_NOTE,
    PRIVATE_NOTE,
    Answer,
    AnswerTimedOut,
    BotCore,
    Metrics,
    Question,
    Source,
)
from services.bots.identity import KeycloakUser

ALICE = KeycloakUser("id-alice", "alice", "alice@acme.example", ("finance",), tenant="acme")
BOB = KeycloakUser("id-bob", "bob", "bob@acme.example", ("engineering",), tenant="acme")
ALICE_TWIN = KeycloakUser("id-alice2", "alice2", "alice2@acme.example", ("finance",), tenant="acme")
# Same group name, another organisation: group:finance of globex is not acme's finance.
MALLORY = KeycloakUser("id-mallory", "mallory", "mallory@globex.example", ("finance",), tenant="globex")
NO_TENANT = KeycloakUser("id-nt", "nt", "nt@acme.example", ("finance",))
REFUSAL = "The documents available to you do not cover this question."


@dataclass
class Directory:
    users: dict[str, KeycloakUser]
    broken: set[str] = field(default_factory=set)

    def user_by_email(self, email: str) -> KeycloakUser | None:
        if email in self.broken:
            raise DependencyUnavailable("identity provider down")
        return self.users.get(email)


class Tokens:
    def token_for(self, user: KeycloakUser) -> str:
        return f"token-of-{user.username}"


@dataclass
class Generation:
    """Answers when a fact's ACL entry is held by the caller and by every audience entry set."""

    facts: dict[str, str] = field(default_factory=lambda: {"group:finance": "Budget is 412,000 [1]."})
    calls: list[tuple[str, str, list[list[str]]]] = field(default_factory=list)
    prefixes: list[list[str]] = field(default_factory=list)
    fail: Exception | None = None

    def answer(
        self,
        token: str,
        question: str,
        conversation_id: str,
        audience: Sequence[Sequence[str]],
        on_delta: Callable[[str], None] | None,
        uri_prefixes: Sequence[str] = (),
    ) -> Answer:
        self.calls.append((token, conversation_id, [list(a) for a in audience]))
        self.prefixes.append(list(uri_prefixes))
        if self.fail is not None:
            raise self.fail
        user = token.removeprefix("token-of-")
        holder = {"alice": ALICE, "bob": BOB}[user]
        readers = [set(holder.acl_entries()), *(set(a) for a in audience)]
        for entry, text in self.facts.items():
            if all(entry in r for r in readers):
                if on_delta is not None:
                    on_delta(text[:6])
                source = Source(1, "Budget memo", "finance/memo.md", "https://docs/memo")
                return Answer(text, False, (source,), "iid-1", conversation_id or "conv-1")
        return Answer(REFUSAL, True, (), "iid-2", conversation_id or "conv-1")


@dataclass
class Sink:
    events: list[tuple[str, object]] = field(default_factory=list)

    def start(self) -> None:
        self.events.append(("start", None))

    def stream(self, text: str) -> None:
        self.events.append(("stream", text))

    def answer(self, answer: Answer) -> None:
        self.events.append(("answer", answer))

    def private(self, answer: Answer, note: str) -> None:
        self.events.append(("private", (answer, note)))

    def problem(self, message: str) -> None:
        self.events.append(("problem", message))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


@dataclass
class Conversations:
    known: dict[str, str] = field(default_factory=dict)

    def conversation(self, thread_key: str) -> str:
        return self.known.get(thread_key, "")

    def remember_conversation(self, thread_key: str, conversation_id: str) -> None:
        self.known[thread_key] = conversation_id


def _core(
    generation: Generation | None = None, directory: Directory | None = None, max_members: int = 50
) -> tuple[BotCore, Generation, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    generation = generation or Generation()
    directory = directory or Directory({u.email: u for u in (ALICE, BOB, ALICE_TWIN, MALLORY, NO_TENANT)})
    core = BotCore(
        directory,
        Tokens(),
        generation,
        Conversations(),
        access_help="Ask IT.",
        max_audience_members=max_members,
        deadline_s=30,
        metrics_=Metrics.create(MeterProvider(metric_readers=[reader]).get_meter("t")),
    )
    return core, generation, reader


def _question(
    asker: str | None = "alice@acme.example",
    members: Sequence[str | None] = (),
    shared: bool = True,
    text: str = "What is the budget?",
) -> Question:
    return Question("slack", text, lambda: asker, "T:C:1", shared, lambda: members)


def _counts(reader: InMemoryMetricReader, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        attributes = p.attributes or {}
                        key = str(attributes.get("reason") or attributes.get("outcome"))
                        out[key] = int(p.value)  # type: ignore[union-attr]
    return out


def test_audience_has_one_entry_set_per_distinct_member_right_and_drops_the_askers_own() -> None:
    core, _, _ = _core()
    members = ["bob@acme.example", "alice2@acme.example", "bob@acme.example", "alice@acme.example"]
    audience = core.audience(_question(members=members), ALICE)
    assert audience == [["everyone", "group:engineering", "user:bob"], ALICE_TWIN.acl_entries()]


@pytest.mark.parametrize(
    "member",
    [
        "mallory@globex.example",  # another tenant, holding a group of the same name
        "nt@acme.example",  # a user with no tenant
        "stranger@x.example",  # no copilot account
        None,  # a guest whose email the platform does not vouch for
    ],
)
def test_a_member_who_cannot_be_vouched_for_leaves_the_channel_no_document(member: str | None) -> None:
    core, _, _ = _core()
    assert core.audience(_question(members=["bob@acme.example", member]), ALICE) is None


def test_members_whose_lookup_fails_leave_the_channel_no_document() -> None:
    directory = Directory({u.email: u for u in (ALICE, BOB)}, broken={"bob@acme.example"})
    core, _, _ = _core(directory=directory)
    assert core.audience(_question(members=["bob@acme.example"]), ALICE) is None


def test_a_member_list_that_cannot_be_fetched_fails_closed() -> None:
    core, _, reader = _core()

    def broken() -> list[str | None]:
        raise RuntimeError("slack down")

    question = Question("slack", "q", lambda: "alice@acme.example", "T:C:1", True, broken)
    assert core.audience(question, ALICE) is None
    assert _counts(reader, "copilot.bots.failures") == {"members_unavailable": 1}


def test_channels_larger_than_the_limit_leave_the_channel_no_document() -> None:
    core, _, _ = _core(max_members=2)
    members = ["alice2@acme.example"] * 3
    assert core.audience(_question(members=members), ALICE) is None


def test_a_channel_with_someone_from_another_tenant_gets_no_document_and_the_asker_a_private_answer() -> None:
    """The leak this guards against: mallory (globex) in a shared channel held "group:finance", which the
    search matched against acme's finance documents as if she were acme's."""
    core, generation, _ = _core()
    sink = Sink()
    outcome = core.handle(_question(members=["mallory@globex.example"]), sink)
    assert outcome == "private"
    assert sink.kinds() == ["start", "answer", "private"]
    assert sink.events[1][1] is OUTSIDERS_IN_CHANNEL
    private, note = cast(tuple[Answer, str], sink.events[2][1])
    assert not private.refused and private.scope == "private" and note == OUTSIDERS_NOTE
    # Only one question went to the copilot, with the asker's rights and to the asker alone.
    assert [c[2] for c in generation.calls] == [[]]


def test_channel_refusal_with_a_private_answer_goes_to_the_asker_privately() -> None:
    core, generation, _ = _core()
    sink = Sink()
    outcome = core.handle(_question(members=["bob@acme.example"]), sink)
    assert outcome == "private"
    assert sink.kinds() == ["start", "answer", "private"]
    channel = sink.events[1][1]
    assert isinstance(channel, Answer) and channel.refused and channel.scope == "channel"
    private, note = cast(tuple[Answer, str], sink.events[2][1])
    assert not private.refused and private.scope == "private" and note == PRIVATE_NOTE
    assert [c[2] for c in generation.calls] == [[BOB.acl_entries()], []]


def test_refused_for_everyone_stays_a_plain_refusal() -> None:
    core, generation, _ = _core()
    sink = Sink()
    assert core.handle(_question(asker="bob@acme.example", members=["alice@acme.example"]), sink) == "refused"
    assert sink.kinds() == ["start", "answer"]
    assert len(generation.calls) == 2


def test_dm_streams_and_uses_the_askers_rights_alone() -> None:
    core, generation, _ = _core()
    sink = Sink()
    assert core.handle(_question(shared=False, members=["bob@acme.example"]), sink) == "answered"
    assert sink.kinds() == ["start", "stream", "answer"]
    assert generation.calls == [("token-of-alice", "", [])]


def test_follow_ups_reuse_the_threads_conversation_per_user() -> None:
    core, generation, _ = _core()
    core.handle(_question(shared=False), Sink())
    core.handle(_question(shared=False), Sink())
    assert [c[1] for c in generation.calls] == ["", "conv-1"]


@pytest.mark.parametrize(
    ("asker", "expected"),
    [(None, "can't see a verified email address"), ("mallory@acme.example", "mallory@acme.example")],
)
def test_unknown_askers_are_told_how_to_get_access(asker: str | None, expected: str) -> None:
    core, generation, _ = _core()
    sink = Sink()
    assert core.handle(_question(asker=asker), sink) == "unknown_user"
    assert sink.kinds() == ["problem"]
    message = str(sink.events[0][1])
    assert expected in message and "Ask IT." in message
    assert generation.calls == []


@pytest.mark.parametrize(
    ("error", "reason", "words"),
    [
        (AnswerTimedOut("no answer from 10.0.0.7"), "timeout", "longer than 30 seconds"),
        (DependencyUnavailable("generation at 10.0.0.7 down"), "unavailable", "unavailable right now"),
        (InvalidInput("question of bob@acme.example is too long"), "invalid_question", "rephrase"),
        (PermissionDenied("alice is not in group:hr"), "permission_denied", "refused to answer"),
        (RuntimeError("boom in 10.0.0.7"), "internal", "Something went wrong"),
    ],
)
def test_failures_always_get_a_visible_reply_and_are_counted(
    error: Exception, reason: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    core, _, reader = _core(Generation(fail=error))
    sink = Sink()
    with caplog.at_level(logging.WARNING, logger="services.bots.core"):
        assert core.handle(_question(), sink) == f"failed:{reason}"
    assert sink.kinds() == ["start", "problem"]
    message = str(sink.events[-1][1])
    assert words in message and str(error) not in message, "the user never sees the exception's text"
    reference = message.rsplit("(reference ", 1)[1].rstrip(")")
    logged = [r.getMessage() for r in caplog.records if reference in r.getMessage()]
    assert len(logged) == 1 and str(error) in logged[0], "the log has the details under the same reference"
    assert _counts(reader, "copilot.bots.failures") == {reason: 1}


def test_an_empty_question_gets_help() -> None:
    core, generation, _ = _core()
    sink = Sink()
    assert core.handle(_question(text="   "), sink) == "help"
    assert sink.kinds() == ["problem"] and generation.calls == []


def test_a_sink_that_cannot_post_is_counted_too() -> None:
    class Broken(Sink):
        def start(self) -> None:
            raise DependencyUnavailable("slack down")

        def problem(self, message: str) -> None:
            raise DependencyUnavailable("slack still down")

    core, _, reader = _core()
    assert core.handle(_question(), Broken()) == "failed:unavailable"
    assert _counts(reader, "copilot.bots.failures") == {"unavailable": 1, "reply_failed": 1}


def test_the_channels_configured_sources_narrow_the_answer() -> None:
    core, generation, _ = _core()
    question = Question(
        "slack", "budget?", lambda: "alice@acme.example", "T:C:1", False, lambda: (), sources=("/finance",)
    )

    core.handle(question, Sink())

    assert generation.prefixes == [["/finance"]]
