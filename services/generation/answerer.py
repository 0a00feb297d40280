"""Question in, cited answer out: retrieve with the caller's rights, refuse when nothing relevant is
readable, stream the model's answer, keep only real citations, and report the interaction."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from copilot.auth import Principal
from copilot.common.v1 import common_pb2
from copilot.errors import InvalidInput
from copilot.events.v1 import events_pb2
from services.generation.citations import cited_numbers, valid_citations
from services.generation.engine import ChatMessage, Engine, GenerationParams
from services.generation.prompt import REFUSAL, build_messages


class PassageSource(Protocol):
    def search(self, token: str, query: str, top_k: int) -> list[common_pb2.Passage]: ...


class InteractionSink(Protocol):
    def publish(self, event: events_pb2.InteractionEvent) -> None: ...


@dataclass(frozen=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True)
class AnswerDone:
    interaction_id: str
    answer: str
    citations: list[tuple[int, common_pb2.Passage]]
    refused: bool
    model: str


@dataclass(frozen=True)
class AnswerPolicy:
    default_top_k: int = 4
    min_relevance: float = 0.45
    max_question_chars: int = 4000
    max_answer_tokens: int = 256
    # Room left in the context for the answer itself.
    answer_reserve_tokens: int = 320


@dataclass
class _Timings:
    started: float = field(default_factory=time.perf_counter)
    retrieval_ms: float = 0.0
    first_token_ms: float = 0.0

    def since_start_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


class Answerer:
    def __init__(
        self,
        source: PassageSource,
        engine: Engine,
        sink: InteractionSink,
        policy: AnswerPolicy,
        pseudonym_key: bytes,
    ) -> None:
        self._source = source
        self._engine = engine
        self._sink = sink
        self._policy = policy
        self._pseudonym_key = pseudonym_key

    def answer(
        self, principal: Principal, question: str, conversation_id: str, top_k: int
    ) -> Iterator[AnswerDelta | AnswerDone]:
        question = question.strip()
        if not question:
            raise InvalidInput("question is empty")
        if len(question) > self._policy.max_question_chars:
            raise InvalidInput(
                f"question is {len(question)} characters; the limit is {self._policy.max_question_chars}"
            )
        timings = _Timings()
        passages = self._source.search(principal.token, question, top_k or self._policy.default_top_k)
        timings.retrieval_ms = timings.since_start_ms()
        relevant = [p for p in passages if p.score >= self._policy.min_relevance]
        interaction_id = str(uuid.uuid4())
        conversation_id = conversation_id or interaction_id

        if not relevant:
            # Same words whether nothing matched or nothing matched that the caller may read,
            # so the answer never reveals that an unreadable document exists.
            yield AnswerDelta(REFUSAL)
            self._report(
                interaction_id, principal, conversation_id, question, REFUSAL, [], [], True, 0, 0, timings
            )
            yield AnswerDone(interaction_id, REFUSAL, [], True, self._engine.model_name)
            return

        budget = self._engine.context_tokens - self._policy.answer_reserve_tokens
        messages, kept = build_messages(question, relevant, self._engine.count_tokens, budget)
        given = relevant[:kept]
        parts: list[str] = []
        prompt_tokens = completion_tokens = 0
        params = GenerationParams(max_tokens=self._policy.max_answer_tokens, temperature=0.0)
        for delta in self._engine.stream_chat(
            [ChatMessage(m["role"], m["content"]) for m in messages], params
        ):
            if delta.text:
                if not parts:
                    timings.first_token_ms = timings.since_start_ms()
                parts.append(delta.text)
                yield AnswerDelta(delta.text)
            prompt_tokens, completion_tokens = delta.prompt_tokens, delta.completion_tokens
        answer = "".join(parts).strip()
        refused = not answer or (REFUSAL.lower().rstrip(".") in answer.lower() and not cited_numbers(answer))
        numbers = [] if refused else valid_citations(answer, len(given))
        citations = [(n, given[n - 1]) for n in numbers]
        self._report(
            interaction_id,
            principal,
            conversation_id,
            question,
            answer,
            given,
            cited_numbers(answer),
            refused,
            prompt_tokens,
            completion_tokens,
            timings,
        )
        yield AnswerDone(interaction_id, answer, citations, refused, self._engine.model_name)

    def _report(
        self,
        interaction_id: str,
        principal: Principal,
        conversation_id: str,
        question: str,
        answer: str,
        passages: Sequence[common_pb2.Passage],
        cited: list[int],
        refused: bool,
        prompt_tokens: int,
        completion_tokens: int,
        timings: _Timings,
    ) -> None:
        occurred = Timestamp()
        occurred.GetCurrentTime()
        self._sink.publish(
            events_pb2.InteractionEvent(
                event_id=interaction_id,
                occurred_at=occurred,
                user_id=principal.pseudonym(self._pseudonym_key),
                groups=list(principal.groups),
                tenant=principal.tenant,
                conversation_id=conversation_id,
                question=question,
                answer=answer,
                passages=list(passages),
                cited_sources=cited,
                refused=refused,
                model=self._engine.model_name,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                retrieval_ms=timings.retrieval_ms,
                first_token_ms=timings.first_token_ms,
                total_ms=timings.since_start_ms(),
            )
        )
