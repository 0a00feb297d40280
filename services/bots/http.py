"""The bots' HTTP endpoints on one aiohttp server: Slack's Events API and Teams' Bot Framework messages."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from aiohttp import web
from botbuilder.core import Bot, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter

from services.bots.slack import SlackBot

log = logging.getLogger(__name__)


class _TurnWatch(Bot):
    """Notes whether a request got as far as the bot, i.e. whether its sender was authenticated."""

    def __init__(self, bot: Bot) -> None:
        self._bot = bot
        self.entered = False

    async def on_turn(self, context: TurnContext) -> None:
        self.entered = True
        await self._bot.on_turn(context)


@dataclass
class TeamsEndpoint:
    adapter: CloudAdapter
    bot: Bot


def build_http_app(
    slack: SlackBot | None, teams: TeamsEndpoint | None, executor: Executor
) -> web.Application:
    app = web.Application()

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"slack": slack is not None, "teams": teams is not None})

    app.router.add_get("/healthz", healthz)

    if slack is not None:

        async def slack_events(request: web.Request) -> web.Response:
            body = await request.text()
            headers: dict[str, str | Sequence[str]] = {
                k.lower(): request.headers.getall(k) for k in request.headers
            }
            response = await asyncio.get_running_loop().run_in_executor(
                executor, slack.dispatch, body, request.query_string, headers
            )
            content_type = (response.headers.get("content-type") or ["text/plain"])[0].split(";")[0]
            return web.Response(status=response.status, text=response.body, content_type=content_type)

        app.router.add_post("/slack/events", slack_events)

    if teams is not None:

        async def teams_messages(request: web.Request) -> web.StreamResponse:
            bot = _TurnWatch(teams.bot)
            try:
                response = await teams.adapter.process(request, bot)
            except web.HTTPException:
                raise
            except Exception as exc:
                if bot.entered:
                    raise
                # Failing before the turn reached the bot means the sender's token did not validate
                # (botframework raises jwt errors, and IndexError for an unknown key id, not 401).
                log.warning("Teams activity rejected: %r", exc)
                raise web.HTTPUnauthorized() from exc
            return response if response is not None else web.Response(status=201)

        app.router.add_post("/api/messages", teams_messages)

    return app


class HttpServer:
    """Runs an aiohttp application on its own event loop in a background thread."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self.loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._thread = threading.Thread(target=self.loop.run_forever, name="bots-http", daemon=True)
        self.port = 0

    def start(self) -> int:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self.port

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp keeps the bound socket here; needed for port 0
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._port

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
