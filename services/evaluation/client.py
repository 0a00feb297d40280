"""The copilot's public gRPC APIs as the evaluation uses them, signed in as each user with their own token."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt
from google.protobuf.json_format import MessageToDict

from copilot.common.v1 import common_pb2
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from copilot.launcher import Stack, pid_alive
from copilot.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.evaluation.settings import EvalSettings

SEARCH_MODES = {
    "default": retrieval_pb2.SEARCH_MODE_UNSPECIFIED,
    "dense": retrieval_pb2.SEARCH_MODE_DENSE,
    "sparse": retrieval_pb2.SEARCH_MODE_SPARSE,
    "hybrid": retrieval_pb2.SEARCH_MODE_HYBRID,
}
# Renew a token this long before it expires, so no answer that takes a while starts with a stale one.
_TOKEN_MARGIN_S = 120


class ApiError(RuntimeError):
    """A call the evaluation cannot go on without failed; the message says which service and why."""


@dataclass(frozen=True)
class Endpoints:
    retrieval: str
    generation: str
    monitor: str
    ingest: str
    issuer: str
    credentials_file: Path


def resolve_endpoints(settings: EvalSettings, home: Path) -> Endpoints:
    """The configured targets, or the local stack's when none are configured."""
    stack: Stack | None = None
    if not (settings.generation_target and settings.retrieval_target and settings.issuer):
        stack = Stack.load(home.resolve())
        if stack is None or not all(pid_alive(c.pid) for c in stack.components):
            raise ApiError(
                "the copilot stack is not running; start it with `copilot up` (or set "
                "COPILOT_EVAL_GENERATION_TARGET, COPILOT_EVAL_RETRIEVAL_TARGET and COPILOT_EVAL_ISSUER)"
            )

    def target(configured: str, name: str) -> str:
        return configured or (stack.endpoint(name) if stack else "")

    credentials = settings.credentials_file or (Path(stack.users_file) if stack else None)
    if credentials is None:
        raise ApiError("set COPILOT_EVAL_CREDENTIALS_FILE to the evaluation users' credentials")
    return Endpoints(
        retrieval=target(settings.retrieval_target, "retrieval"),
        generation=target(settings.generation_target, "generation"),
        monitor=target(settings.monitor_target, "monitor"),
        ingest=target(settings.ingest_target, "ingest"),
        issuer=settings.issuer or (stack.issuer if stack else ""),
        credentials_file=credentials,
    )


def load_credentials(path: Path) -> dict[str, str]:
    """username -> password, from a users file ([{"username", "password", ...}]) or a plain mapping."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ApiError(f"cannot read credentials from {path}: {exc}") from exc
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return {str(u["username"]): str(u["password"]) for u in raw if "username" in u and "password" in u}
    raise ApiError(f"{path}: expected a list of users or a username -> password mapping")


class Tokens:
    """Signs the evaluation users in with the password grant (like `copilot` itself) and keeps each token
    until shortly before it expires."""

    def __init__(
        self, issuer: str, credentials: dict[str, str], client_id: str, client_secret: str = ""
    ) -> None:
        from keycloak import KeycloakOpenID

        if "/realms/" not in issuer:
            raise ApiError(f"issuer {issuer!r} is not a realm URL (…/realms/NAME)")
        server_url, realm = issuer.split("/realms/", 1)
        self._oidc = KeycloakOpenID(
            server_url=server_url + "/",
            realm_name=realm,
            client_id=client_id,
            client_secret_key=client_secret or None,
        )
        self._issuer = issuer
        self._credentials = credentials
        self._cache: dict[str, tuple[str, dict[str, Any]]] = {}

    @property
    def usernames(self) -> list[str]:
        return list(self._credentials)

    def token(self, username: str) -> str:
        return self._signed_in(username)[0]

    def claims(self, username: str) -> dict[str, Any]:
        return self._signed_in(username)[1]

    def groups(self, username: str) -> tuple[str, ...]:
        # Keycloak writes group paths ("/finance"); the ACLs name the last segment.
        return tuple(
            sorted({str(g).strip("/").split("/")[-1] for g in self.claims(username).get("groups", [])})
        )

    def entitlements(self, username: str) -> set[str]:
        """The ACL entries a passage may be granted by for this user."""
        return {"everyone", f"user:{username}", *(f"group:{g}" for g in self.groups(username))}

    def user_for_role(self, role: str) -> str:
        for username in self._credentials:
            if role in self.groups(username):
                return username
        raise ApiError(f"no evaluation user holds the group {role!r}; add one to the credentials file")

    def _signed_in(self, username: str) -> tuple[str, dict[str, Any]]:
        from keycloak.exceptions import KeycloakAuthenticationError, KeycloakConnectionError

        cached = self._cache.get(username)
        if cached and cached[1].get("exp", 0) - _TOKEN_MARGIN_S > time.time():
            return cached
        password = self._credentials.get(username)
        if password is None:
            raise ApiError(f"no credentials for user {username!r}; add them to the credentials file")
        try:
            token = str(self._oidc.token(username, password)["access_token"])
        except KeycloakAuthenticationError as exc:
            raise ApiError(f"cannot sign in as {username!r}: unknown user or wrong password") from exc
        except KeycloakConnectionError as exc:
            raise ApiError(f"identity provider at {self._issuer} is not reachable") from exc
        # Read only to learn the expiry and groups; the services verify the signature.
        claims = jwt.decode(token, options={"verify_signature": False})
        self._cache[username] = (token, claims)
        return token, claims


@dataclass(frozen=True)
class Answered:
    final: generation_pb2.AnswerFinal
    first_token_ms: float
    total_ms: float


def _failure(exc: grpc.RpcError, service: str, target: str) -> ApiError:
    code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE:
        return ApiError(
            f"{service} at {target} is unavailable ({details}); is the stack up? (`copilot status`)"
        )
    return ApiError(f"{service}: {code.name}: {details}")


class CopilotApi:
    def __init__(self, endpoints: Endpoints, tokens: Tokens, settings: EvalSettings) -> None:
        self.endpoints = endpoints
        self.tokens = tokens
        self._settings = settings
        self._retrieval = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(endpoints.retrieval))
        self._generation = generation_pb2_grpc.GenerationServiceStub(open_channel(endpoints.generation))
        self._ingest = (
            ingest_pb2_grpc.IngestServiceStub(open_channel(endpoints.ingest)) if endpoints.ingest else None
        )
        self._monitor = (
            monitor_pb2_grpc.MonitorServiceStub(open_channel(endpoints.monitor))
            if endpoints.monitor
            else None
        )

    def search(
        self, user: str, query: str, top_k: int, mode: str, rerank: bool
    ) -> tuple[list[common_pb2.Passage], float]:
        # One passage per document: retrieval metrics rank documents, so let every slot be a new one.
        request = retrieval_pb2.SearchRequest(
            query=query, top_k=top_k, mode=SEARCH_MODES[mode], rerank=rerank, max_per_document=1
        )
        started = time.perf_counter()
        try:
            reply = self._retrieval.Search(
                request, metadata=bearer(self.tokens.token(user)), timeout=self._settings.search_timeout_s
            )
        except grpc.RpcError as exc:
            raise _failure(exc, "retrieval", self.endpoints.retrieval) from exc
        return list(reply.passages), (time.perf_counter() - started) * 1000

    def answer(
        self, user: str, question: str, top_k: int, model: str, mode: str = "default", rerank: bool = False
    ) -> Answered:
        # The variant's search settings go with the answer too: they decide which passages it is written
        # from, and that is what the variant is evaluated on.
        request = generation_pb2.AnswerRequest(
            question=question, top_k=top_k, model=model, search_mode=SEARCH_MODES[mode], rerank=rerank
        )
        started = time.perf_counter()
        first = 0.0
        final = None
        try:
            stream: Iterator[generation_pb2.AnswerResponse] = self._generation.Answer(
                request, metadata=bearer(self.tokens.token(user)), timeout=self._settings.answer_timeout_s
            )
            for response in stream:
                if not first and response.WhichOneof("kind") in ("delta", "final"):
                    first = (time.perf_counter() - started) * 1000
                if response.HasField("final"):
                    final = response.final
        except grpc.RpcError as exc:
            raise _failure(exc, "generation", self.endpoints.generation) from exc
        if final is None:
            raise ApiError("generation: the answer stream ended without its final message")
        return Answered(final, first, (time.perf_counter() - started) * 1000)

    # ---- red-team fixtures -------------------------------------------------------------------------

    def _ingest_stub(self) -> ingest_pb2_grpc.IngestServiceStub:
        if self._ingest is None:
            raise ApiError("set COPILOT_EVAL_INGEST_TARGET to plant the red-team documents")
        return self._ingest

    def ingest(
        self, user: str, uri: str, filename: str, content: bytes, access: common_pb2.AccessControl
    ) -> str:
        try:
            reply = self._ingest_stub().IngestDocument(
                ingest_pb2.IngestDocumentRequest(uri=uri, filename=filename, content=content, access=access),
                metadata=bearer(self.tokens.token(user)),
                timeout=300,
            )
        except grpc.RpcError as exc:
            raise _failure(exc, "ingest", self.endpoints.ingest) from exc
        return str(reply.document_id)

    def delete(self, user: str, uri: str) -> int:
        try:
            reply = self._ingest_stub().DeleteDocument(
                ingest_pb2.DeleteDocumentRequest(uri=uri),
                metadata=bearer(self.tokens.token(user)),
                timeout=60,
            )
        except grpc.RpcError as exc:
            raise _failure(exc, "ingest", self.endpoints.ingest) from exc
        return int(reply.deleted_chunks)

    # ---- the monitor's review queue ----------------------------------------------------------------

    def _monitor_call(self, method: str, request: Any, user: str) -> Any:
        if self._monitor is None:
            raise ApiError("set COPILOT_EVAL_MONITOR_TARGET to reach the monitor's review queue")
        try:
            return getattr(self._monitor, method)(
                request, metadata=bearer(self.tokens.token(user)), timeout=60
            )
        except grpc.RpcError as exc:
            raise _failure(exc, "monitor", self.endpoints.monitor) from exc

    def submit_for_review(self, user: str, samples: Sequence[Any], labels_required: int = 0) -> list[str]:
        reply = self._monitor_call(
            "SubmitForReview",
            monitor_pb2.SubmitForReviewRequest(samples=list(samples), labels_required=labels_required),
            user,
        )
        return list(reply.item_ids)

    def review_items(self, user: str, batch: str) -> list[dict[str, Any]]:
        reply = self._monitor_call(
            "ListReviewItems",
            monitor_pb2.ListReviewItemsRequest(batch=batch, detector="evaluation", limit=1000),
            user,
        )
        return [_as_dict(i) for i in reply.items]

    def agreement(self, user: str, batch: str) -> list[dict[str, Any]]:
        reply = self._monitor_call("GetAgreement", monitor_pb2.GetAgreementRequest(batch=batch), user)
        return [_as_dict(a) for a in reply.agreements]

    def export_adjudicated(self, user: str, detector: str = "", batch: str = "") -> list[dict[str, Any]]:
        """The resolved review items as regression cases, each saying whether its answer was cut off."""
        reply = self._monitor_call(
            "ExportAdjudicated", monitor_pb2.ExportAdjudicatedRequest(detector=detector, batch=batch), user
        )
        return [_as_dict(c) for c in reply.cases]


def _as_dict(message: Any) -> dict[str, Any]:
    # Unset sub-messages (an undefined agreement coefficient) stay absent; scalars and enums are filled.
    return dict(
        MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    )
