"""The copilot's GenerationService, asked with the user's token and the channel's audience."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc

from copilot.common.v1 import common_pb2
from copilot.errors import (
    CopilotError,
    DependencyUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from services.bots.core import Answer, AnswerTimedOut, Source

ERROR_BY_STATUS: dict[grpc.StatusCode, type[CopilotError]] = {
    grpc.StatusCode.DEADLINE_EXCEEDED: AnswerTimedOut,
    grpc.StatusCode.UNAVAILABLE: DependencyUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.NOT_FOUND: NotFound,
}
DOUBTFUL_VERDICTS = (generation_pb2.SUPPORT_VERDICT_UNSUPPORTED, generation_pb2.SUPPORT_VERDICT_INVALID)


class GrpcGeneration:
    def __init__(self, target: str, deadline_s: float, link_for: Callable[[str], str]) -> None:
        self._channel = open_channel(target)
        self._stub = generation_pb2_grpc.GenerationServiceStub(self._channel)
        self._deadline_s = deadline_s
        self._link_for = link_for

    def answer(
        self,
        token: str,
        question: str,
        conversation_id: str,
        audience: Sequence[Sequence[str]],
        on_delta: Callable[[str], None] | None,
        uri_prefixes: Sequence[str] = (),
    ) -> Answer:
        request = generation_pb2.AnswerRequest(
            question=question,
            conversation_id=conversation_id,
            audience=[common_pb2.Audience(acl_entries=list(entries)) for entries in audience],
            uri_prefixes=list(uri_prefixes),
        )
        text = ""
        try:
            for reply in self._stub.Answer(request, metadata=bearer(token), timeout=self._deadline_s):
                if reply.HasField("delta"):
                    text += reply.delta
                    if on_delta is not None:
                        on_delta(text)
                elif reply.HasField("final"):
                    return answer_from_final(reply.final, self._link_for)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            details = exc.details() or code.name  # type: ignore[attr-defined]
            raise ERROR_BY_STATUS.get(code, CopilotError)(details) from exc
        raise DependencyUnavailable("the copilot's answer ended before it was complete")

    def close(self) -> None:
        self._channel.close()


def answer_from_final(final: generation_pb2.AnswerFinal, link_for: Callable[[str], str]) -> Answer:
    def source(citation: generation_pb2.Citation) -> Source:
        passage = citation.passage
        title = passage.title or passage.uri or passage.document_id
        return Source(citation.number, title, passage.uri, link_for(passage.uri))

    # An uncited sentence is left out: it is most often the model's own framing, and a chat message shows
    # no per-sentence checks.
    doubtful = [s for s in final.sentences if s.verdict in DOUBTFUL_VERDICTS]
    return Answer(
        text=final.answer,
        refused=final.refused,
        sources=tuple(source(c) for c in final.citations),
        interaction_id=final.interaction_id,
        conversation_id=final.conversation_id,
        doubtful=sum(1 for s in doubtful if not s.supported_by),
        supported_instead_by=tuple(source(s.supported_by[0]) for s in doubtful if s.supported_by),
    )


def link_template(template: str) -> Callable[[str], str]:
    """Turns a document uri into a link readers can open: ``template`` with ``{uri}`` replaced, or the uri
    itself when it already is a web link."""

    def link_for(uri: str) -> str:
        if template and uri:
            return template.replace("{uri}", uri)
        return uri if uri.startswith(("https://", "http://")) else ""

    return link_for
