"""The review web page: the queue with filters, an item's question, answer, cited passages and detector
evidence with label buttons, and the agreement dashboard with server-drawn SVG charts.

Sign-in takes the same bearer token (a Keycloak JWT) as the gRPC API, from an ``Authorization`` header or
from a form that keeps it in an HttpOnly, SameSite=Strict cookie. Questions and answers come from users and
documents, so everything is escaped by Jinja2's autoescaping, and the Content-Security-Policy allows no
script at all: an injected tag stays text even if escaping were ever missed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import uvicorn
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from copilot.auth import Principal
from copilot.errors import CopilotError, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from copilot.grpc_server import Verifier
from services.monitor import agreement
from services.monitor.detectors import Span
from services.monitor.review import (
    VERDICTS,
    AgreementEntry,
    ItemFilter,
    ReviewQueue,
    State,
    Verdict,
)

log = logging.getLogger(__name__)

COOKIE = "copilot_review_token"
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_COEFFICIENTS = (
    ("percent_agreement", "% agreement"),
    ("cohen_kappa", "Cohen's κ"),
    ("fleiss_kappa", "Fleiss' κ"),
    ("krippendorff_alpha", "Krippendorff's α"),
    ("gwet_ac1", "Gwet's AC1"),
)


def marked(text: str, spans: Iterable[Span], field: str) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, is evidence) by the spans of ``field``; overlapping spans merge, and spans
    reaching past the text (an edited event, a bug) are cut to it. The template escapes every piece."""
    ranges = sorted((max(0, span.start), min(len(text), span.end)) for span in spans if span.field == field)
    merged: list[list[int]] = []
    for start, end in ranges:
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    pieces: list[tuple[str, bool]] = []
    at = 0
    for start, end in merged:
        if at < start:
            pieces.append((text[at:start], False))
        pieces.append((text[start:end], True))
        at = end
    if at < len(text) or not pieces:
        pieces.append((text[at:], False))
    return pieces


@dataclass(frozen=True)
class Bar:
    """One coefficient of an agreement chart in SVG coordinates; the axis runs from -1 to 1."""

    label: str
    text: str
    x: float
    width: float
    ci_low: float
    ci_high: float
    defined: bool


CHART_WIDTH = 360.0


def _x(value: float) -> float:
    return (max(-1.0, min(1.0, value)) + 1) / 2 * CHART_WIDTH


def chart_bars(figures: agreement.AgreementFigures) -> list[Bar]:
    bars = []
    for attribute, label in _COEFFICIENTS:
        estimate: agreement.Estimate | None = getattr(figures, attribute)
        if estimate is None:
            bars.append(Bar(label, "undefined", _x(0), 0, _x(0), _x(0), False))
            continue
        start, end = sorted((_x(0), _x(estimate.value)))
        text = f"{estimate.value:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}]"
        bars.append(Bar(label, text, start, end - start, _x(estimate.ci_low), _x(estimate.ci_high), True))
    return bars


class ReviewPage:
    """The Starlette app. Review rules live in ``ReviewQueue``; this only renders and parses forms."""

    def __init__(
        self,
        queue: ReviewQueue,
        verifier: Verifier,
        reviewer_role: str,
        adjudicator_role: str,
        resamples: int = agreement.DEFAULT_RESAMPLES,
        cookie_secure: bool = False,
    ) -> None:
        self._queue = queue
        self._verifier = verifier
        self._reviewer_role = reviewer_role
        self._adjudicator_role = adjudicator_role
        self._resamples = resamples
        self._cookie_secure = cookie_secure
        # Signs the per-session form tokens; a restart only asks open forms to be sent again.
        self._form_key = secrets.token_bytes(32)
        self._agreement_cache: dict[tuple[str, str], tuple[tuple[int, int], list[AgreementEntry]]] = {}
        self._cache_lock = threading.Lock()
        self._templates = Environment(
            loader=FileSystemLoader(_TEMPLATES), autoescape=select_autoescape(default=True), trim_blocks=True
        )
        self._templates.globals["verdict_label"] = lambda v: str(v).replace("_", " ")
        self._templates.globals["state_label"] = lambda s: str(s).replace("_", " ")
        self._templates.globals["marked"] = marked
        self.app = Starlette(
            routes=[
                Route("/", self._guard(self.queue_page)),
                Route("/items/{item_id}", self._guard(self.item_page)),
                Route("/items/{item_id}/{action}", self._guard(self.item_action), methods=["POST"]),
                Route("/agreement", self._guard(self.agreement_page)),
                Route("/login", self.login, methods=["GET", "POST"]),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/healthz", lambda _request: PlainTextResponse("ok")),
            ]
        )

    # rendering and guarding

    def _render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self._templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def _form_token(self, token: str) -> str:
        return hmac.new(self._form_key, token.encode(), hashlib.sha256).hexdigest()

    def _principal(self, request: Request) -> tuple[Principal, str]:
        header = request.headers.get("authorization", "")
        token = (
            header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        )
        if not token:
            raise Unauthenticated("sign in with a bearer token")
        principal = self._verifier.verify(token)
        if not principal.has_role(self._reviewer_role):
            raise PermissionDenied(f"the review page needs the {self._reviewer_role!r} role")
        return principal, token

    def _guard(
        self, handler: Callable[[Request, Principal, str], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                principal, token = await run_in_threadpool(self._principal, request)
            except Unauthenticated as exc:
                if request.method == "GET":
                    return RedirectResponse(
                        "/login?" + urlencode({"next": request.url.path}), status_code=303
                    )
                return self._render("error.html", 401, title="Sign in again", message=str(exc), user=None)
            except PermissionDenied as exc:
                return self._render("error.html", 403, title="Not allowed", message=str(exc), user=None)
            try:
                return await handler(request, principal, self._form_token(token))
            except NotFound as exc:
                return self._render("error.html", 404, title="Not found", message=str(exc), user=principal)
            except (InvalidInput, PermissionDenied) as exc:
                status = 403 if isinstance(exc, PermissionDenied) else 400
                return self._render("error.html", status, title="Not done", message=str(exc), user=principal)

        return endpoint

    # pages

    async def queue_page(self, request: Request, principal: Principal, form_token: str) -> Response:
        params = request.query_params
        state_name = params.get("state", "")
        if state_name and state_name not in {s.value for s in State}:
            raise InvalidInput(f"unknown state {state_name!r}")
        filters = ItemFilter(
            state=State(state_name) if state_name else None,
            detector=params.get("detector", ""),
            batch=params.get("batch", ""),
            assignee=principal.username if params.get("assignee") == "me" else params.get("assignee", ""),
            overdue_only=params.get("overdue") == "1",
            interrupted_only=params.get("interrupted") == "1",
        )
        items, total = await run_in_threadpool(self._queue.list_items, filters, 200)
        return self._render(
            "queue.html",
            user=principal,
            items=items,
            total=total,
            filters=filters,
            assignee=params.get("assignee", ""),
            states=[s.value for s in State],
            form_token=form_token,
        )

    async def item_page(self, request: Request, principal: Principal, form_token: str) -> Response:
        item = await run_in_threadpool(self._queue.get, request.path_params["item_id"])
        escalated = item.state == State.ESCALATED
        may_adjudicate = principal.has_role(self._adjudicator_role)
        verdicts = [v for v in VERDICTS[item.kind] if not (escalated and v == Verdict.ESCALATE)]
        return self._render(
            "item.html",
            user=principal,
            item=item,
            verdicts=verdicts if item.state != State.RESOLVED and (not escalated or may_adjudicate) else [],
            adjudicating=escalated and may_adjudicate,
            can_claim=item.state in (State.OPEN, State.IN_REVIEW)
            and principal.username not in item.assignees,
            form_token=form_token,
        )

    async def item_action(self, request: Request, principal: Principal, form_token: str) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(form.get("form_token", ""), form_token):
            raise PermissionDenied("the form expired or came from another site; reload the page and retry")
        item_id, action = request.path_params["item_id"], request.path_params["action"]
        if action == "claim":
            await run_in_threadpool(self._queue.claim, item_id, principal.username)
        elif action == "label":
            try:
                verdict = Verdict(form.get("verdict", ""))
            except ValueError as exc:
                raise InvalidInput("choose a verdict") from exc
            await run_in_threadpool(
                self._queue.label,
                item_id,
                principal.username,
                verdict,
                form.get("comment", ""),
                principal.has_role(self._adjudicator_role),
            )
        elif action == "comment":
            await run_in_threadpool(self._queue.comment, item_id, principal.username, form.get("text", ""))
        else:
            raise NotFound(f"no action {action!r}")
        return RedirectResponse(f"/items/{item_id}", status_code=303)

    async def agreement_page(self, request: Request, principal: Principal, form_token: str) -> Response:
        detector, batch = request.query_params.get("detector", ""), request.query_params.get("batch", "")
        started = time.monotonic()
        entries = await run_in_threadpool(self._agreement, detector, batch)
        return self._render(
            "agreement.html",
            user=principal,
            entries=[(entry, chart_bars(entry.figures)) for entry in entries],
            detector=detector,
            batch=batch,
            resamples=self._resamples,
            chart_width=CHART_WIDTH,
            zero_x=_x(0),
            elapsed_ms=(time.monotonic() - started) * 1000,
            form_token=form_token,
        )

    def _agreement(self, detector: str, batch: str) -> list[AgreementEntry]:
        """Bootstrapping takes a while, so figures are reused until a label changes."""
        version = self._queue.labels_version()
        with self._cache_lock:
            cached = self._agreement_cache.get((detector, batch))
        if cached and cached[0] == version:
            return cached[1]
        entries = self._queue.agreement(detector, batch, self._resamples)
        with self._cache_lock:
            if len(self._agreement_cache) > 64:
                self._agreement_cache.clear()
            self._agreement_cache[(detector, batch)] = (version, entries)
        return entries

    # signing in and out

    async def login(self, request: Request) -> Response:
        target = request.query_params.get("next", "/")
        # Only paths on this site, so the form cannot be used to bounce a reviewer elsewhere.
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        if request.method == "GET":
            return self._render("login.html", user=None, next=target, error="")
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        token = form.get("token", "").strip().removeprefix("Bearer ").strip()
        try:
            principal = await run_in_threadpool(self._verifier.verify, token)
        except CopilotError as exc:
            return self._render("login.html", 401, user=None, next=target, error=str(exc))
        if not principal.has_role(self._reviewer_role):
            error = f"{principal.username} lacks the {self._reviewer_role!r} role"
            return self._render("login.html", 403, user=None, next=target, error=error)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=self._cookie_secure, path="/"
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response


class WebServer:
    """Serves an ASGI app with uvicorn on a thread of the monitor's process."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        self._socket = socket.create_server((host, port), reuse_port=False)
        self.host = host
        self.port = int(self._socket.getsockname()[1])
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="review-page", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the review page did not start on {self.url}")
            time.sleep(0.02)
        log.info("review page on %s", self.url)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()
