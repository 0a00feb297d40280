"""Local stand-ins for the chat bots' tests: what cannot run here, plus a cheap generation service.

- ``FakeSlackApi``: Slack's Web API on loopback (slack_sdk's ``base_url`` points at it). It records every
  call and answers the few methods the bot uses from a small table of users and channels. Slack's own
  servers are the only part of the request path that is not real.
- ``AclGeneration``: a real gRPC GenerationService on loopback, behind the real auth interceptor and token
  verifier, answering from three fixed passages with the copilot's ACL semantics (the caller's entries,
  narrowed by every audience entry set). It keeps the Slack/Teams integration tests off the model; the
  end-to-end test (tests/e2e/test_bot_channel.py) runs the real stack instead.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import jwt
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from copilot.auth import TokenVerifier, current_principal
from copilot.common.v1 import common_pb2
from copilot.devissuer import DevClient, DevIssuer, load_or_create_key, load_users, serve_in_thread
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_server import GrpcServer
from copilot.settings import AuthSettings, ServiceSettings
from tests.conftest import SAMPLE_USERS, free_port

BOT_CLIENT = DevClient(
    "copilot-bot", "bot-secret-for-tests", admin_roles=("view-users",), may_impersonate=True
)
REFUSAL = "The documents available to you do not cover this question."
FINANCE_QUESTION = "What is the Q3 2026 travel budget?"
VACATION_QUESTION = "How many vacation days do we get?"
SLOW_QUESTION = "Please think very slowly about this"


def start_issuer(tmp_dir: Any) -> tuple[DevIssuer, ThreadingHTTPServer]:
    """The dev Keycloak stand-in with the bot's confidential client."""
    port = free_port()
    issuer = DevIssuer(
        f"http://127.0.0.1:{port}/realms/copilot",
        "copilot",
        load_or_create_key(tmp_dir / "key.pem"),
        load_users(SAMPLE_USERS),
        {BOT_CLIENT.client_id: BOT_CLIENT},
    )
    return issuer, serve_in_thread(issuer, "127.0.0.1", port)


def slack_signature(secret: str, timestamp: int, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def wait_for(condition: Callable[[], Any], timeout_s: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class SlackCall:
    method: str
    args: dict[str, Any]


@dataclass
class FakeSlackApi:
    users: dict[str, dict[str, Any]]
    channels: dict[str, dict[str, Any]]
    bot_user_id: str = "UBOT"
    # Where apps.connections.open sends Socket Mode clients.
    socket_url: str = ""
    calls: list[SlackCall] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ts: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, args: dict[str, Any]) -> None:
                method = urlsplit(self.path).path.rsplit("/", 1)[-1]
                with fake._lock:
                    fake.calls.append(SlackCall(method, args))
                body = json.dumps(fake.answer(method, args)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                self._reply({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})

            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                if "json" in self.headers.get("Content-Type", ""):
                    args = json.loads(raw or "{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw).items()}
                args.update({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})
                self._reply(args)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def stop(self) -> None:
        self.server.shutdown()

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "apps.connections.open":
            return {"ok": True, "url": self.socket_url}
        if method == "auth.test":
            return {
                "ok": True,
                "user_id": self.bot_user_id,
                "bot_id": "BBOT",
                "team_id": "T1",
                "team": "Acme",
            }
        if method == "users.info":
            user = self.users.get(args.get("user", ""))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        if method == "conversations.members":
            channel = self.channels.get(args.get("channel", ""))
            if channel is None:
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": True, "members": channel["members"], "response_metadata": {"next_cursor": ""}}
        if method == "conversations.info":
            channel = self.channels.get(args.get("channel", ""))
            return {"ok": True, "channel": {"id": args.get("channel"), **(channel or {})}}
        if method in ("chat.postMessage", "chat.update"):
            ts = args.get("ts") or f"1700000000.{next(self._ts):06d}"
            return {"ok": True, "channel": args.get("channel"), "ts": ts}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}
        return {"ok": False, "error": "unknown_method"}

    def called(self, method: str, **match: Any) -> list[SlackCall]:
        with self._lock:
            calls = list(self.calls)
        return [c for c in calls if c.method == method and all(c.args.get(k) == v for k, v in match.items())]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()


def slack_user(user_id: str, email: str | None, **extra: Any) -> dict[str, Any]:
    """A users.info user; an email is confirmed unless ``is_email_confirmed=False`` is given."""
    profile = {"email": email} if email else {}
    return {
        "id": user_id,
        "name": user_id.lower(),
        "deleted": False,
        "is_bot": False,
        "is_email_confirmed": bool(email),
        "profile": profile,
        **extra,
    }


def failure_counts(reader: InMemoryMetricReader) -> dict[str, int]:
    """The bots' ``copilot.bots.failures`` counter, by reason."""
    counts: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "copilot.bots.failures":
                    for point in metric.data.data_points:  # type: ignore[attr-defined]
                        counts[str((point.attributes or {})["reason"])] = int(point.value)  # type: ignore[union-attr]
    return counts


@dataclass(frozen=True)
class FixedPassage:
    passage: common_pb2.Passage
    acl: frozenset[str]
    keywords: tuple[str, ...]


PASSAGES = [
    FixedPassage(
        common_pb2.Passage(
            chunk_id="budget#0",
            document_id="budget",
            title="Q3 2026 budget memo",
            uri="https://docs.acme.example/finance/q3-2026-budget-memo.md",
            text="The Q3 2026 travel budget is 412,000 USD.",
        ),
        frozenset({"group:finance"}),
        ("budget",),
    ),
    FixedPassage(
        common_pb2.Passage(
            chunk_id="vacation#0",
            document_id="vacation",
            title="Vacation policy",
            uri="everyone/vacation-policy.md",
            text="Employees receive 25 days of paid annual leave.",
        ),
        frozenset({"everyone"}),
        ("vacation",),
    ),
]


@dataclass
class AnswerCall:
    username: str
    claims: dict[str, Any]
    question: str
    conversation_id: str
    audience: list[list[str]]
    uri_prefixes: list[str] = field(default_factory=list)


class AclGeneration(generation_pb2_grpc.GenerationServiceServicer):
    def __init__(self, slow_s: float = 0.0) -> None:
        self.calls: list[AnswerCall] = []
        self.slow_s = slow_s
        self._lock = threading.Lock()

    def Answer(  # noqa: N802
        self, request: generation_pb2.AnswerRequest, context: grpc.ServicerContext
    ) -> Iterator[generation_pb2.AnswerResponse]:
        principal = current_principal()
        token = dict(context.invocation_metadata())["authorization"][7:]
        claims = jwt.decode(token, options={"verify_signature": False})
        audience = [list(a.acl_entries) for a in request.audience]
        with self._lock:
            self.calls.append(
                AnswerCall(
                    principal.username,
                    claims,
                    request.question,
                    request.conversation_id,
                    audience,
                    list(request.uri_prefixes),
                )
            )
        if SLOW_QUESTION in request.question:
            time.sleep(self.slow_s)
        conversation_id = request.conversation_id or uuid.uuid4().hex
        interaction_id = uuid.uuid4().hex
        readers = [set(principal.acl_principals()), *(set(a) for a in audience)]
        relevant = [p for p in PASSAGES if any(k in request.question.lower() for k in p.keywords)]
        readable = [p for p in relevant if all(p.acl & entries for entries in readers)]
        if not readable:
            yield generation_pb2.AnswerResponse(
                final=generation_pb2.AnswerFinal(
                    interaction_id=interaction_id,
                    answer=REFUSAL,
                    refused=True,
                    conversation_id=conversation_id,
                )
            )
            return
        text = ""
        for piece in ["According to ", "the documents: ", readable[0].passage.text[:-1], " [1]."]:
            text += piece
            yield generation_pb2.AnswerResponse(delta=piece)
        citation = generation_pb2.Citation(number=1, passage=readable[0].passage)
        yield generation_pb2.AnswerResponse(
            final=generation_pb2.AnswerFinal(
                interaction_id=interaction_id,
                answer=text,
                citations=[citation],
                conversation_id=conversation_id,
                model="fixed-passages",
                sentences=[
                    generation_pb2.SentenceCheck(
                        text=text, cited=[1], support=0.9, verdict=generation_pb2.SUPPORT_VERDICT_SUPPORTED
                    )
                ],
            )
        )


def start_generation(issuer: DevIssuer, servicer: AclGeneration) -> tuple[GrpcServer, str]:
    settings = ServiceSettings(host="127.0.0.1", port=0)
    server = GrpcServer("generation-standin", settings, TokenVerifier(AuthSettings(issuer=issuer.issuer)))
    slot = server.add_service(
        generation_pb2_grpc.add_GenerationServiceServicer_to_server, "copilot.generation.v1.GenerationService"
    )
    port = server.start()
    slot.fill(servicer)
    server.set_serving(True)
    return server, f"127.0.0.1:{port}"
