"""What a chat bot does with a question, whatever the chat platform: find out who asked, ask the copilot
with that person's own rights (narrowed to what everyone else who will see the answer may read), and
always say something back.

The platform adapters (``slack.py``, ``teams.py``) turn their events into a ``Question`` and give a
``ReplySink`` that knows how to post, update and privately show messages on that platform.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from opentelemetry import metrics

from copilot.errors import (
    CopilotError,
    DependencyUnavailable,
    InvalidInput,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from services.bots.identity import Directory, KeycloakUser, TokenSource

log = logging.getLogger(__name__)

Scope = Literal["channel", "private"]
# Where a question's replies go: "dm", a one-to-one chat with the asker; "channel", answers for everyone
# there but anything about the asker to the asker alone; "private", everything to the asker alone.
Where = Literal["dm", "channel", "private"]


class AnswerTimedOut(CopilotError):
    """The copilot did not finish the answer within the bot's deadline."""


@dataclass(frozen=True)
class Source:
    number: int
    title: str
    uri: str
    # Where a reader can open the document; empty when its uri is not a link.
    link: str


@dataclass(frozen=True)
class Answer:
    text: str
    refused: bool
    sources: tuple[Source, ...]
    interaction_id: str
    conversation_id: str
    # Sentences the citation check found supported by no source given, or citing no valid one.
    doubtful: int = 0
    # "channel": only documents every member may read were used; "private": the asker's own rights.
    scope: Scope = "private"
    # For each sentence that cites a source which does not support it while another does: that other
    # source. A wrong citation, not an invented claim; readers are pointed at the right source.
    supported_instead_by: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Question:
    platform: str
    text: str
    # Looks up the asker's verified email on the chat platform; None when the platform would not say.
    asker_email: Callable[[], str | None]
    # Identifies the chat thread (platform, channel and thread); follow-ups in it continue the conversation.
    thread: str
    # True when other people will see the answer (a channel message, not a DM or a private reply).
    shared: bool
    # Emails of the other people who will see the answer; None for a person who has none the platform
    # vouches for (a guest, an unconfirmed email): then nobody there can be shown a document. Bots and
    # deactivated accounts are not listed: they read nothing.
    members: Callable[[], Sequence[str | None]] = field(default=lambda: ())
    # Uri prefixes the channel is configured to answer from; empty means every document.
    sources: tuple[str, ...] = ()


class ReplySink(Protocol):
    """Where one question's replies go on the chat platform."""

    def start(self) -> None:
        """Show that an answer is coming (a placeholder message)."""

    def stream(self, text: str) -> None:
        """The answer so far; the sink decides how often the platform is updated."""

    def answer(self, answer: Answer) -> None:
        """The finished answer, where the question was asked."""

    def private(self, answer: Answer, note: str) -> None:
        """An answer only the asker sees, with a note saying why."""

    def problem(self, message: str) -> None:
        """Something went wrong, or the bot cannot help. Shown to the asker alone wherever others would
        see it (the message may name the asker's email); a placeholder others saw says only that the asker
        was told why."""


class Generation(Protocol):
    def answer(
        self,
        token: str,
        question: str,
        conversation_id: str,
        audience: Sequence[Sequence[str]],
        on_delta: Callable[[str], None] | None,
        uri_prefixes: Sequence[str] = (),
    ) -> Answer: ...


PRIVATE_NOTE = (
    "Only you can see this. The answer in the channel could use only documents every member of the "
    "channel may read, and those did not cover your question; this answer uses your own access."
)
OUTSIDERS_NOTE = (
    "Only you can see this. Someone in the channel is outside your organisation or could not be matched to "
    "a copilot account, so no document may be shown there; this answer uses your own access."
)
# What such a channel sees instead of an answer: no document, no source, no hint of what exists.
OUTSIDERS_IN_CHANNEL = Answer(
    text="I can't answer from our documents in this channel: not everyone here can be checked against "
    "them. I've answered the asker privately.",
    refused=True,
    sources=(),
    interaction_id="",
    conversation_id="",
    scope="channel",
)
CHANNEL_SCOPE_NOTE = "Answered from documents every member of this channel may read."
HELP = "Ask me a question about our documents, for example: what is our travel policy?"
# What a channel sees where an answer was coming when the asker is told privately why there is none.
PROBLEM_IN_CHANNEL = "I couldn't answer this here. Only the asker can see why."


@dataclass(frozen=True)
class Metrics:
    answers: metrics.Counter
    failures: metrics.Counter

    @staticmethod
    def create(meter: metrics.Meter | None = None) -> Metrics:
        meter = meter or metrics.get_meter("copilot.bots")
        return Metrics(
            answers=meter.create_counter(
                "copilot.bots.answers", description="Questions answered, by platform and outcome"
            ),
            failures=meter.create_counter(
                "copilot.bots.failures", description="Questions that ended in an error reply, by reason"
            ),
        )


class BotCore:
    def __init__(
        self,
        directory: Directory,
        tokens: TokenSource,
        generation: Generation,
        conversations: ConversationMap,
        *,
        access_help: str,
        max_audience_members: int,
        deadline_s: float,
        metrics_: Metrics | None = None,
    ) -> None:
        self._directory = directory
        self._tokens = tokens
        self._generation = generation
        self._conversations = conversations
        self._access_help = access_help
        self._max_audience_members = max_audience_members
        self._deadline_s = deadline_s
        self._metrics = metrics_ or Metrics.create()

    def who_is(self, email: str | None) -> KeycloakUser | None:
        return self._directory.user_by_email(email) if email else None

    def unknown_user_message(self, email: str | None) -> str:
        if not email:
            return (
                "I can't see a verified email address on your chat account, so I can't tell who you are in "
                f"the copilot and won't answer with anyone else's access. {self._access_help}"
            )
        return (
            f"I couldn't find a copilot account with the verified email {email}, so I can't answer with "
            f"your access. {self._access_help}"
        )

    def count_failure(self, platform: str, reason: str) -> None:
        self._metrics.failures.add(1, {"platform": platform, "reason": reason})

    def failure(self, platform: str, exc: Exception, doing: str, reason: str | None = None) -> str:
        """Logs and counts a failure; returns what the user is told. The user never sees the exception's
        text (it may name internals or other people), only plain words and a reference that is also in the
        log line, so support can find the details."""
        explained, message = self._explain(exc)
        reference = uuid.uuid4().hex[:8]
        log.warning(
            "%s on %s failed (%s, reference %s): %s",
            doing,
            platform,
            explained,
            reference,
            exc,
            exc_info=explained == "internal",
        )
        self._metrics.failures.add(1, {"platform": platform, "reason": reason or explained})
        return f"{message} (reference {reference})"

    def handle(self, question: Question, sink: ReplySink) -> str:
        """Answers one question through ``sink``; returns the outcome (for logs and tests). Every path
        ends in a visible reply."""
        try:
            outcome = self._handle(question, sink)
        except Exception as exc:  # noqa: BLE001 (whatever broke, the asker must hear about it)
            outcome = f"failed:{self._explain(exc)[0]}"
            message = self.failure(question.platform, exc, "answering")
            try:
                sink.problem(message)
            except Exception:  # noqa: BLE001
                log.exception("could not even tell the asker on %s that answering failed", question.platform)
                self._metrics.failures.add(1, {"platform": question.platform, "reason": "reply_failed"})
        self._metrics.answers.add(1, {"platform": question.platform, "outcome": outcome.split(":")[0]})
        return outcome

    def _handle(self, question: Question, sink: ReplySink) -> str:
        text = question.text.strip()
        if not text:
            sink.problem(HELP)
            return "help"
        email = question.asker_email()
        asker = self.who_is(email)
        if asker is None:
            sink.problem(self.unknown_user_message(email))
            return "unknown_user"
        sink.start()
        token = self._tokens.token_for(asker)
        audience = self.audience(question, asker) if question.shared else []
        if audience is None:
            own = self._ask(token, text, question, asker, "private", [], None)
            sink.answer(OUTSIDERS_IN_CHANNEL)
            sink.private(own, OUTSIDERS_NOTE)
            return "private"
        scope: Scope = "channel" if question.shared else "private"
        answer = self._ask(token, text, question, asker, scope, audience, sink.stream)
        if answer.refused and question.shared:
            own = self._ask(token, text, question, asker, "private", [], None)
            if not own.refused:
                sink.answer(answer)
                sink.private(own, PRIVATE_NOTE)
                return "private"
        sink.answer(answer)
        return "refused" if answer.refused else "answered"

    def _ask(
        self,
        token: str,
        text: str,
        question: Question,
        asker: KeycloakUser,
        scope: Scope,
        audience: Sequence[Sequence[str]],
        on_delta: Callable[[str], None] | None,
    ) -> Answer:
        thread_key = f"{question.platform}|{question.thread}|{asker.id}|{scope}"
        conversation_id = self._conversations.conversation(thread_key)
        answer = self._generation.answer(token, text, conversation_id, audience, on_delta, question.sources)
        if answer.conversation_id:
            self._conversations.remember_conversation(thread_key, answer.conversation_id)
        return replace(answer, scope=scope)

    def audience(self, question: Question, asker: KeycloakUser) -> list[list[str]] | None:
        """The read rights of everyone else who will see the answer, one entry per distinct set.

        None when someone who will see it cannot be vouched for: a member of another tenant (a shared or
        external channel), one who matches no user (a guest, no verified email, a failed lookup), or a
        member list that cannot be fetched or is longer than the bot checks. ACL entries mean something
        only within a tenant (``everyone`` is everyone in the asker's), so such a channel may be shown no
        document at all.
        """
        try:
            emails = list(question.members())
        except Exception as exc:  # noqa: BLE001 (no member list: nobody can be vouched for)
            log.warning("cannot list the members of %s (%s); answering privately", question.thread, exc)
            self._metrics.failures.add(1, {"platform": question.platform, "reason": "members_unavailable"})
            return None
        if len(emails) > self._max_audience_members:
            log.info("%s has more than %d members; answering privately", question.thread, len(emails))
            return None
        rights: set[tuple[str, ...]] = set()
        for email in emails:
            try:
                member = self.who_is(email)
            except CopilotError as exc:
                log.warning("cannot resolve a member of %s (%s); answering privately", question.thread, exc)
                return None
            if member is None or not member.tenant or member.tenant != asker.tenant:
                log.info("%s has a member outside the asker's tenant; answering privately", question.thread)
                return None
            rights.add(tuple(member.acl_entries()))
        # Members with exactly the asker's rights narrow nothing.
        rights.discard(tuple(asker.acl_entries()))
        return [list(r) for r in sorted(rights)]

    def _explain(self, exc: Exception) -> tuple[str, str]:
        """A failure's reason (for the counter) and what the asker is told."""
        if isinstance(exc, AnswerTimedOut):
            return "timeout", (
                f"The answer took longer than {self._deadline_s:.0f} seconds, so I stopped waiting. "
                "Please try again, or ask a narrower question."
            )
        if isinstance(exc, Unauthenticated):
            return "unauthenticated", (
                "The copilot did not accept the sign-in I made on your behalf, so I could not answer. "
                "Please tell your copilot administrator."
            )
        if isinstance(exc, PermissionDenied):
            return "permission_denied", (
                "The copilot refused to answer on your behalf. If you think you should have access, please "
                "tell your copilot administrator."
            )
        if isinstance(exc, InvalidInput):
            return "invalid_question", (
                "The copilot could not take this question as asked. Please rephrase or shorten it."
            )
        if isinstance(exc, ResourceExhausted):
            return "busy", "The copilot is busy right now. Please try again in a minute."
        if isinstance(exc, DependencyUnavailable):
            return "unavailable", "The copilot is unavailable right now. Please try again in a few minutes."
        return "internal", "Something went wrong on my side, sorry. Please try again later."


class ConversationMap(Protocol):
    def conversation(self, thread_key: str) -> str: ...

    def remember_conversation(self, thread_key: str, conversation_id: str) -> None: ...
