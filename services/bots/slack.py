"""The Slack bot (slack-bolt): mentions in channels, DMs, threads as conversations, streamed answers by
updating one message, feedback buttons, and ``/copilot config`` for channel admins.

Events arrive over HTTP (``/slack/events``, signed with the app's signing secret; Bolt rejects bad
signatures and timestamps more than five minutes off) or over Socket Mode. Bolt acknowledges each event
at once and runs the handler on its thread pool, so slow answers never make Slack redeliver.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from copilot.errors import CopilotError, DependencyUnavailable
from services.bots.core import PROBLEM_IN_CHANNEL, Answer, BotCore, Question, Where
from services.bots.feedback import FeedbackRecorder
from services.bots.identity import TtlCache
from services.bots.settings import SlackSettings
from services.bots.slack_blocks import (
    FEEDBACK_ACTION_PREFIX,
    answer_blocks,
    answer_fallback,
    problem_blocks,
    streaming_text,
)
from services.bots.store import BotStore, ChannelConfig, changed, describe

log = logging.getLogger(__name__)

PLATFORM = "slack"
PLACEHOLDER = "Looking that up…"
DISABLED = (
    "The copilot is turned off in this channel. A channel admin can turn it on with "
    "`/copilot config enabled on`."
)
THANKS = {
    "positive": "Thanks for the feedback!",
    "negative": "Thanks, that helps us improve the answers.",
    "report": "Thanks, the answer was reported and a reviewer will look at it.",
}
USAGE = (
    "Usage: `/copilot config` shows this channel's settings; `/copilot config enabled on|off`, "
    "`/copilot config visibility channel|ephemeral`, `/copilot config sources all|PREFIX...` change them "
    "(workspace admins and the channel's creator)."
)


def web_client(settings: SlackSettings) -> WebClient:
    client = WebClient(token=settings.bot_token.get_secret_value(), base_url=settings.api_url, timeout=15)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    return client


class SlackPeople:
    """Slack users' emails (users.info) and channel members (conversations.members), cached."""

    def __init__(self, client: WebClient, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._users: TtlCache[str, dict[str, Any]] = TtlCache(lambda _user: ttl_s, clock)

    def user(self, user_id: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            try:
                return dict(self._client.users_info(user=user_id)["user"])
            except SlackApiError as exc:
                raise DependencyUnavailable(f"Slack would not say who {user_id} is: {exc}") from exc

        return self._users.get_or_load(user_id, load)

    def email_of(self, user_id: str) -> str | None:
        """The user's email if Slack says it is confirmed; None for bots, deactivated users, hidden and
        unconfirmed emails (anyone can type an unconfirmed one, e.g. a colleague's)."""
        user = self.user(user_id)
        if _reads_nothing(user) or user.get("is_email_confirmed") is not True:
            return None
        email = user.get("profile", {}).get("email")
        return str(email) if email else None

    def member_emails(self, channel: str, exclude: set[str]) -> list[str | None]:
        members: list[str] = []
        cursor = ""
        while True:
            reply = self._client.conversations_members(channel=channel, limit=200, cursor=cursor or None)
            members.extend(reply["members"])
            cursor = str((reply.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                break
        emails: list[str | None] = []
        for member in members:
            if member in exclude:
                continue
            try:
                if _reads_nothing(self.user(member)):
                    continue
                emails.append(self.email_of(member))
            except CopilotError as exc:
                log.warning("cannot look up channel member %s (%s); failing closed", member, exc)
                emails.append(None)
        return emails


def _reads_nothing(user: dict[str, Any]) -> bool:
    """Bots, apps and deactivated accounts: no person reads a channel through them."""
    return bool(user.get("deleted") or user.get("is_bot") or user.get("is_app_user"))


class SlackReply:
    """One question's replies: a placeholder in the thread, updated as the answer streams (at most one
    chat.update per interval), then the final blocks; or, where the answer is private, a single ephemeral
    message. Problems in a channel go to the asker alone (ephemeral)."""

    def __init__(
        self,
        client: WebClient,
        channel: str,
        user: str,
        thread_ts: str | None,
        where: Where,
        update_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._channel = channel
        self._user = user
        self._thread_ts = thread_ts
        self._ephemeral = where == "private"
        self._in_channel = where == "channel"
        self._interval = update_interval_s
        self._clock = clock
        self._ts: str | None = None
        self._last_update = float("-inf")

    def start(self) -> None:
        if self._ephemeral:
            return
        reply = self._client.chat_postMessage(
            channel=self._channel, thread_ts=self._thread_ts, text=PLACEHOLDER
        )
        self._ts = str(reply["ts"])

    def stream(self, text: str) -> None:
        if self._ts is None or self._clock() - self._last_update < self._interval:
            return
        self._last_update = self._clock()
        try:
            self._client.chat_update(channel=self._channel, ts=self._ts, text=streaming_text(text))
        except SlackApiError as exc:
            log.warning("could not update the streaming answer in %s: %s", self._channel, exc)

    def answer(self, answer: Answer) -> None:
        self._show(answer_fallback(answer), answer_blocks(answer))

    def private(self, answer: Answer, note: str) -> None:
        self._to_asker(f"{note}\n{answer_fallback(answer)}", answer_blocks(answer, note))

    def problem(self, message: str) -> None:
        if not self._in_channel:
            self._show(message, problem_blocks(message))
            return
        if self._ts is not None:
            try:
                self._client.chat_update(
                    channel=self._channel,
                    ts=self._ts,
                    text=PROBLEM_IN_CHANNEL,
                    blocks=problem_blocks(PROBLEM_IN_CHANNEL),
                )
            except SlackApiError as exc:  # the asker is still told, below
                log.warning("could not update the placeholder in %s: %s", self._channel, exc)
        self._to_asker(message, problem_blocks(message))

    def _to_asker(self, text: str, blocks: list[dict[str, Any]]) -> None:
        self._client.chat_postEphemeral(
            channel=self._channel, user=self._user, thread_ts=self._thread_ts, text=text, blocks=blocks
        )

    def _show(self, text: str, blocks: list[dict[str, Any]]) -> None:
        if self._ephemeral:
            self._to_asker(text, blocks)
            return
        if self._ts is not None:
            try:
                self._client.chat_update(channel=self._channel, ts=self._ts, text=text, blocks=blocks)
                return
            except SlackApiError as exc:
                log.warning("could not update the answer in %s (%s); posting it anew", self._channel, exc)
        self._client.chat_postMessage(
            channel=self._channel, thread_ts=self._thread_ts, text=text, blocks=blocks
        )


class SlackBot:
    def __init__(
        self,
        settings: SlackSettings,
        client: WebClient,
        core: BotCore,
        feedback: FeedbackRecorder,
        store: BotStore,
        people_ttl_s: float,
    ) -> None:
        self._settings = settings
        self._client = client
        self._core = core
        self._feedback = feedback
        self._store = store
        self._people = SlackPeople(client, people_ttl_s)
        self.app = App(
            client=client,
            signing_secret=settings.signing_secret.get_secret_value(),
            # Acknowledge first, answer on the listener thread pool: Slack redelivers after 3 seconds.
            process_before_response=False,
        )
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.action(re.compile(f"^{FEEDBACK_ACTION_PREFIX}(positive|negative|report)$"))(
            self._on_feedback
        )
        self.app.command("/copilot")(self._on_command)

    def dispatch(self, body: str, query: str, headers: dict[str, str | Sequence[str]]) -> BoltResponse:
        """One HTTP request from Slack; Bolt verifies its signature and timestamp."""
        return self.app.dispatch(BoltRequest(body=body, query=query, headers=headers))

    def _on_mention(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        if event.get("channel_type") == "im":
            return  # the message event answers DMs
        self._answer(event, body, context.bot_user_id or "")

    def _on_message(self, event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        self._answer(event, body, context.bot_user_id or "")

    def _answer(self, event: dict[str, Any], body: dict[str, Any], bot_user_id: str) -> None:
        channel, user = str(event["channel"]), str(event.get("user", ""))
        is_dm = event.get("channel_type") == "im" or channel.startswith("D")
        thread_ts = event.get("thread_ts") or (None if is_dm else event.get("ts"))
        # The core replies to whatever goes wrong once it has the question; before that, this does.
        try:
            if not self._store.first_time(str(body.get("event_id") or f"{channel}:{event.get('ts')}")):
                return  # Slack redelivered an event already answered
            config = ChannelConfig() if is_dm else self._store.channel_config(PLATFORM, channel)
        except Exception as exc:  # noqa: BLE001 (the asker must hear about it)
            self._tell(channel, user, thread_ts, self._core.failure(PLATFORM, exc, "reading the bot's state"))
            return
        if not config.enabled:
            self._tell(channel, user, thread_ts, DISABLED)
            return
        ephemeral = not is_dm and config.visibility == "ephemeral"
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", "", str(event.get("text", ""))).strip()
        question = Question(
            platform=PLATFORM,
            text=text,
            asker_email=lambda: self._people.email_of(user),
            thread=f"{body.get('team_id', '')}:{channel}:{thread_ts or 'dm'}",
            shared=not is_dm and not ephemeral,
            members=lambda: self._people.member_emails(channel, exclude={user, bot_user_id}),
            sources=config.source_prefixes,
        )
        where: Where = "dm" if is_dm else "private" if ephemeral else "channel"
        sink = SlackReply(self._client, channel, user, thread_ts, where, self._settings.update_interval_s)
        outcome = self._core.handle(question, sink)
        log.info("slack question in %s: %s", channel, outcome)

    def _on_feedback(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        rating = str(action["action_id"])[len(FEEDBACK_ACTION_PREFIX) :]
        user_id = str(body["user"]["id"])
        channel = str(body.get("channel", {}).get("id") or body.get("container", {}).get("channel_id", ""))
        thread_ts = body.get("message", {}).get("thread_ts") or body.get("container", {}).get("thread_ts")
        try:
            email = self._people.email_of(user_id)
            user = self._core.who_is(email)
            if user is None:
                message = self._core.unknown_user_message(email)
            else:
                self._feedback.record(user, str(action.get("value", "")), rating, PLATFORM)
                message = THANKS[rating]
        except Exception as exc:  # noqa: BLE001 (the user clicked and must hear back, whatever broke)
            failed = self._core.failure(PLATFORM, exc, "recording feedback", reason="feedback")
            message = f"Sorry, I couldn't record your feedback. {failed}"
        self._tell(channel, user_id, thread_ts, message)

    def _on_command(self, ack: Any, command: dict[str, Any]) -> None:
        try:
            reply = self._configure(
                str(command.get("text", "")), str(command["user_id"]), str(command["channel_id"])
            )
        except Exception as exc:  # noqa: BLE001 (the acknowledgement is the reply; it must always be sent)
            reply = f"Sorry, that didn't work. {self._core.failure(PLATFORM, exc, 'the /copilot command')}"
        # A slash command's acknowledgement text is shown to the sender alone.
        ack(reply)

    def _tell(self, channel: str, user: str, thread_ts: str | None, text: str) -> None:
        """Shows ``text`` to ``user`` alone."""
        try:
            self._client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=text)
        except Exception:  # noqa: BLE001 (nothing left to tell the user with)
            log.exception("could not tell %s in %s: %s", user, channel, text)
            self._core.count_failure(PLATFORM, "reply_failed")

    def _configure(self, text: str, user: str, channel: str) -> str:
        words = text.split()
        if not words or words[0] != "config":
            return USAGE
        config = self._store.channel_config(PLATFORM, channel)
        if len(words) == 1:
            return describe(config)
        if not self._may_configure(user, channel):
            return "Only workspace admins and the channel's creator can change the copilot's settings here."
        new = changed(config, words[1], words[2:])
        if new is None:
            return USAGE
        self._store.set_channel_config(PLATFORM, channel, new, updated_by=user)
        return "Updated. " + describe(new)

    def _may_configure(self, user: str, channel: str) -> bool:
        person = self._people.user(user)
        if person.get("is_admin") or person.get("is_owner"):
            return True
        try:
            info = self._client.conversations_info(channel=channel)
        except SlackApiError as exc:
            raise DependencyUnavailable(f"Slack would not describe this channel: {exc}") from exc
        return bool(info["channel"].get("creator") == user)
