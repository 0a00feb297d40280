"""The Teams bot (Bot Framework, botbuilder-python): the same core as Slack, Adaptive Cards, Azure AD
users matched to Keycloak users by email.

Teams expects the bot to answer its POST within seconds, so a turn only gathers what needs the incoming
activity (who asked, the channel's members) and returns; the answer is written on a worker thread and
posted proactively (``continue_conversation``), streamed by updating one message. Teams has no ephemeral
messages, so a private answer goes to a personal chat with the asker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.core.teams import TeamsActivityHandler, TeamsInfo
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import (
    Activity,
    ActivityEventNames,
    ActivityTypes,
    ChannelAccount,
    ConversationParameters,
    ConversationReference,
)
from botframework.connector.auth import (
    BotFrameworkAuthentication,
    BotFrameworkAuthenticationFactory,
    PasswordServiceClientCredentialFactory,
    ServiceClientCredentialsFactory,
)

from copilot.errors import DependencyUnavailable
from services.bots.core import PROBLEM_IN_CHANNEL, Answer, BotCore, Question, Where
from services.bots.feedback import FeedbackRecorder
from services.bots.settings import TeamsSettings
from services.bots.store import BotStore, changed, describe
from services.bots.teams_cards import FEEDBACK_KEY, answer_card

log = logging.getLogger(__name__)

PLATFORM = "teams"
FOREIGN_TENANT = "I only answer people of the organisations I was set up for."
PLACEHOLDER = "Looking that up…"
STREAMING_MARK = " ✍️"
DISABLED = (
    "The copilot is turned off in this channel. A team owner can turn it on with "
    "`@copilot config enabled on`."
)
USAGE = (
    "Usage: `@copilot config` shows this channel's settings; `@copilot config enabled on|off`, "
    "`@copilot config visibility channel|ephemeral` (ephemeral: answers in a personal chat) and "
    "`@copilot config sources all|PREFIX...` change them (team owners)."
)
THANKS = {
    "positive": "Thanks for the feedback!",
    "negative": "Thanks, that helps us improve the answers.",
    "report": "Thanks, the answer was reported and a reviewer will look at it.",
}
# Longest the worker thread waits for one Bot Framework call.
CALL_TIMEOUT_S = 30.0
# The turns the adapter runs for the bot's own proactive posts (continue_conversation,
# create_conversation); their errors belong to whoever is posting.
PROACTIVE = (ActivityEventNames.continue_conversation, ActivityEventNames.create_conversation)


def authentication(
    settings: TeamsSettings, credentials: ServiceClientCredentialsFactory | None = None
) -> BotFrameworkAuthentication:
    """Validates incoming activities against the channel's published keys (RS256, issuer, audience = our
    app id, serviceUrl claim) and signs outgoing calls with the app's Azure AD credentials."""
    return BotFrameworkAuthenticationFactory.create(
        to_channel_from_bot_login_url=settings.login_url,
        to_channel_from_bot_oauth_scope=settings.oauth_scope,
        to_bot_from_channel_token_issuer=settings.token_issuer,
        to_bot_from_channel_open_id_metadata_url=settings.openid_metadata_url,
        to_bot_from_emulator_open_id_metadata_url=settings.openid_metadata_url,
        credential_factory=credentials
        or PasswordServiceClientCredentialFactory(
            settings.app_id, settings.app_password.get_secret_value(), settings.app_tenant_id or None
        ),
    )


def _raising(exc: Exception) -> Callable[[], Any]:
    def fail() -> Any:
        raise exc

    return fail


async def send_personal(
    adapter: CloudAdapter, app_id: str, reference: ConversationReference, activity: Activity
) -> None:
    """Sends ``activity`` in a one-to-one chat with the user of ``reference``: the only place in Teams
    where nobody else reads along (Teams has no ephemeral messages)."""
    tenant = (reference.conversation.tenant_id if reference.conversation else None) or ""
    parameters = ConversationParameters(
        is_group=False,
        bot=reference.bot,
        members=[ChannelAccount(id=reference.user.id)],
        tenant_id=tenant or None,
        channel_data={"tenant": {"id": tenant}} if tenant else None,
    )

    async def post(ctx: TurnContext) -> None:
        await ctx.send_activity(activity)

    await adapter.create_conversation(app_id, post, parameters, reference.channel_id, reference.service_url)


class TeamsReply:
    """One question's replies, posted from a worker thread through the adapter's event loop."""

    def __init__(
        self,
        adapter: CloudAdapter,
        app_id: str,
        reference: Any,
        loop: asyncio.AbstractEventLoop,
        where: Where,
        update_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._adapter = adapter
        self._app_id = app_id
        self._reference = reference
        self._loop = loop
        self._private_only = where == "private"
        self._in_channel = where == "channel"
        self._interval = update_interval_s
        self._clock = clock
        self._activity_id: str | None = None
        self._last_update = float("-inf")

    def _run(self, logic: Callable[[TurnContext], Awaitable[None]]) -> None:
        call = self._adapter.continue_conversation(self._reference, logic, self._app_id)
        asyncio.run_coroutine_threadsafe(call, self._loop).result(CALL_TIMEOUT_S)

    def start(self) -> None:
        if self._private_only:
            return

        async def post(ctx: TurnContext) -> None:
            sent = await ctx.send_activity(PLACEHOLDER)
            self._activity_id = sent.id if sent else None

        self._run(post)

    def stream(self, text: str) -> None:
        if self._activity_id is None or self._clock() - self._last_update < self._interval:
            return
        self._last_update = self._clock()
        try:
            self._replace(MessageFactory.text(text + STREAMING_MARK))
        except Exception as exc:  # noqa: BLE001 (a lost progress update is not worth failing for)
            log.warning("could not update the streaming answer: %s", exc)

    def answer(self, answer: Answer) -> None:
        card = MessageFactory.attachment(CardFactory.adaptive_card(answer_card(answer)))
        if self._private_only:
            self._personal(card)
        else:
            self._show(card)

    def private(self, answer: Answer, note: str) -> None:
        self._personal(MessageFactory.attachment(CardFactory.adaptive_card(answer_card(answer, note))))

    def problem(self, message: str) -> None:
        if not (self._private_only or self._in_channel):
            self._show(MessageFactory.text(f"⚠️ {message}"))
            return
        if self._activity_id is not None:
            try:
                self._replace(MessageFactory.text(f"⚠️ {PROBLEM_IN_CHANNEL}"))
            except Exception as exc:  # noqa: BLE001 (the asker is still told, below)
                log.warning("could not update the placeholder: %s", exc)
        self._personal(MessageFactory.text(f"⚠️ {message}"))

    def _show(self, activity: Activity) -> None:
        if self._activity_id is not None:
            try:
                self._replace(activity)
                return
            except Exception as exc:  # noqa: BLE001 (post it anew instead)
                log.warning("could not update the answer (%s); posting it anew", exc)

        async def post(ctx: TurnContext) -> None:
            await ctx.send_activity(activity)

        self._run(post)

    def _replace(self, activity: Activity) -> None:
        activity.id = self._activity_id
        activity.type = ActivityTypes.message

        async def update(ctx: TurnContext) -> None:
            await ctx.update_activity(activity)

        self._run(update)

    def _personal(self, activity: Activity) -> None:
        call = send_personal(self._adapter, self._app_id, self._reference, activity)
        asyncio.run_coroutine_threadsafe(call, self._loop).result(CALL_TIMEOUT_S)


class TeamsBot(TeamsActivityHandler):
    def __init__(
        self,
        settings: TeamsSettings,
        adapter: CloudAdapter,
        core: BotCore,
        feedback: FeedbackRecorder,
        store: BotStore,
        executor: Executor,
    ) -> None:
        super().__init__()
        self._settings = settings
        self._adapter = adapter
        self._core = core
        self._feedback = feedback
        self._store = store
        self._executor = executor
        # Without it, an exception in a turn becomes a bare HTTP 500 to Teams that nobody sees or counts.
        adapter.on_turn_error = self._on_turn_error

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        tenant = _tenant_of(activity)
        if tenant not in self._settings.trusted_tenants():
            log.warning("refused a message from Azure AD tenant %r, which is not trusted", tenant)
            self._core.count_failure(PLATFORM, "foreign_tenant")
            await turn_context.send_activity(FOREIGN_TENANT)
            return
        if isinstance(activity.value, dict) and FEEDBACK_KEY in activity.value:
            await self._on_feedback(turn_context, activity.value)
            return
        conversation = activity.conversation
        shared = (conversation.conversation_type or "personal") != "personal"
        text = (TurnContext.remove_recipient_mention(activity) or activity.text or "").strip()
        if shared and text.split()[:1] == ["config"]:
            await self._configure(turn_context, text.split())
            return
        config = self._store.channel_config(PLATFORM, _channel_key(activity)) if shared else None
        if config is not None and not config.enabled:
            await turn_context.send_activity(DISABLED)
            return
        private_only = config is not None and config.visibility == "ephemeral"
        asker = activity.from_property.id
        try:
            email = await self._email_of(turn_context, asker)
            asker_email: Callable[[], str | None] = lambda: email  # noqa: E731
        except Exception as exc:  # noqa: BLE001 (told to the asker through the core)
            asker_email = _raising(DependencyUnavailable(f"Teams would not say who you are: {exc}"))
        members: Callable[[], Sequence[str | None]] = lambda: ()  # noqa: E731
        if shared and not private_only:
            try:
                emails = await self._member_emails(turn_context, exclude={asker, activity.recipient.id})
                members = lambda: emails  # noqa: E731
            except Exception as exc:  # noqa: BLE001 (the core fails closed)
                members = _raising(exc)
        question = Question(
            platform=PLATFORM,
            text=text,
            asker_email=asker_email,
            thread=conversation.id,
            shared=shared and not private_only,
            members=members,
            sources=config.source_prefixes if config is not None else (),
        )
        sink = TeamsReply(
            self._adapter,
            self._settings.app_id,
            TurnContext.get_conversation_reference(activity),
            asyncio.get_running_loop(),
            "private" if private_only else "channel" if shared else "dm",
            self._settings.update_interval_s,
        )
        # Not awaited: the turn must end quickly; the core always replies, whatever happens.
        asyncio.get_running_loop().run_in_executor(self._executor, self._core.handle, question, sink)

    async def _configure(self, turn_context: TurnContext, words: list[str]) -> None:
        """``@copilot config ...`` in a channel, like Slack's ``/copilot config``: anyone may see the
        channel's settings, team owners may change them."""
        channel = _channel_key(turn_context.activity)
        config = self._store.channel_config(PLATFORM, channel)
        if len(words) == 1:
            reply = describe(config)
        elif not await self._is_team_owner(turn_context):
            reply = "Only the team's owners can change the copilot's settings here."
        else:
            new = changed(config, words[1], words[2:])
            if new is None:
                reply = USAGE
            else:
                sender = turn_context.activity.from_property.id
                self._store.set_channel_config(PLATFORM, channel, new, updated_by=sender)
                reply = "Updated. " + describe(new)
        await turn_context.send_activity(reply)

    async def _is_team_owner(self, turn_context: TurnContext) -> bool:
        # Teams reports a member's role in the team as userRole ("owner", "user", "guest"); anything
        # else, or no role (a group chat outside a team), may not change settings.
        member = await TeamsInfo.get_member(turn_context, turn_context.activity.from_property.id)
        return (member.user_role or "").lower() == "owner"

    async def _email_of(self, turn_context: TurnContext, member_id: str) -> str | None:
        member = await TeamsInfo.get_member(turn_context, member_id)
        return member.email or None

    async def _member_emails(self, turn_context: TurnContext, exclude: set[str]) -> list[str | None]:
        emails: list[str | None] = []
        token = None
        while True:
            page = await TeamsInfo.get_paged_members(turn_context, token)
            emails.extend(m.email or None for m in page.members or [] if m.id not in exclude)
            token = page.continuation_token
            if not token:
                return emails

    async def _on_feedback(self, turn_context: TurnContext, value: dict[str, Any]) -> None:
        rating = str(value.get(FEEDBACK_KEY, ""))
        try:
            email = await self._email_of(turn_context, turn_context.activity.from_property.id)
            user = await asyncio.get_running_loop().run_in_executor(self._executor, self._core.who_is, email)
            if user is None:
                message = self._core.unknown_user_message(email)
            else:
                self._feedback.record(user, str(value.get("interaction_id", "")), rating, PLATFORM)
                message = THANKS.get(rating, THANKS["positive"])
        except Exception as exc:  # noqa: BLE001 (Teams lookups raise their own errors; the user hears of all)
            failed = self._core.failure(PLATFORM, exc, "recording feedback", reason="feedback")
            message = f"Sorry, I couldn't record your feedback. {failed}"
        await self._tell(turn_context, MessageFactory.text(message))

    async def _on_turn_error(self, turn_context: TurnContext, error: Exception) -> None:
        """Anything a turn raised: the sender is told (privately in a channel) and it is counted."""
        activity = turn_context.activity
        if activity.type == ActivityTypes.event and activity.name in PROACTIVE:
            raise error  # one of the bot's own posts from a worker thread; the poster reports it
        message = self._core.failure(PLATFORM, error, "a Teams turn")
        try:
            await self._tell(turn_context, MessageFactory.text(f"⚠️ {message}"))
        except Exception:  # noqa: BLE001 (nothing left to tell the user with)
            log.exception("could not tell the Teams user that their turn failed")
            self._core.count_failure(PLATFORM, "reply_failed")

    async def _tell(self, turn_context: TurnContext, activity: Activity) -> None:
        """Replies to the sender alone: in the same chat if it is a personal one, else in a personal chat,
        since the reply may name the sender's email."""
        if (turn_context.activity.conversation.conversation_type or "personal") == "personal":
            await turn_context.send_activity(activity)
            return
        reference = TurnContext.get_conversation_reference(turn_context.activity)
        await send_personal(self._adapter, self._settings.app_id, reference, activity)


def _channel_key(activity: Activity) -> str:
    """A Teams channel's conversation id without the thread part (";messageid=...")."""
    return str(activity.conversation.id).split(";", 1)[0]


def _tenant_of(activity: Activity) -> str:
    if activity.conversation is not None and activity.conversation.tenant_id:
        return str(activity.conversation.tenant_id)
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = data.get("tenant")
    return str(tenant.get("id", "")) if isinstance(tenant, dict) else ""
