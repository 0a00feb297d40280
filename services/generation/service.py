from __future__ import annotations

from collections.abc import Iterator

import grpc

from copilot.auth import current_principal
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from services.generation.agent import ToolUse
from services.generation.answerer import AnswerDelta, Answerer


class GenerationServicer(generation_pb2_grpc.GenerationServiceServicer):
    def __init__(self, answerer: Answerer) -> None:
        self._answerer = answerer

    def Answer(
        self, request: generation_pb2.AnswerRequest, context: grpc.ServicerContext
    ) -> Iterator[generation_pb2.AnswerResponse]:  # noqa: N802,E501
        pieces = self._answerer.answer(
            current_principal(),
            request.question,
            request.conversation_id,
            request.top_k,
            model=request.model,
            audience=list(request.audience),
            use_tools=request.use_tools,
            uri_prefixes=list(request.uri_prefixes),
            search_mode=request.search_mode,
            rerank=request.rerank,
        )
        for piece in pieces:
            if isinstance(piece, AnswerDelta):
                yield generation_pb2.AnswerResponse(delta=piece.text)
                continue
            if isinstance(piece, ToolUse):
                yield generation_pb2.AnswerResponse(
                    tool_call=generation_pb2.ToolCall(
                        name=piece.name, arguments=piece.arguments, result=piece.result, failed=piece.failed
                    )
                )
                continue
            yield generation_pb2.AnswerResponse(
                final=generation_pb2.AnswerFinal(
                    interaction_id=piece.interaction_id,
                    answer=piece.answer,
                    refused=piece.refused,
                    model=piece.model,
                    citations=[generation_pb2.Citation(number=n, passage=p) for n, p in piece.citations],
                    sentences=[
                        generation_pb2.SentenceCheck(
                            text=s.text,
                            cited=s.cited,
                            support=s.support,
                            verdict=generation_pb2.SupportVerdict.Value(
                                f"SUPPORT_VERDICT_{s.verdict.upper()}"
                            ),
                            supported_by=[
                                generation_pb2.Citation(number=n, passage=piece.given[n - 1])
                                for n in s.supported_by
                            ],
                        )
                        for s in piece.sentences
                    ],
                    conversation_id=piece.conversation_id,
                )
            )
