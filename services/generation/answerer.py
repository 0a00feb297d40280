"""Question in, cited answer out: pick the model, turn a follow-up into a standalone question, retrieve
with the caller's rights (or let the agent call tools), refuse when nothing relevant is readable, stream
the model's answer, keep only real citations, check each sentence against the sources it cites, and
report the interaction."""

from __future__ import annotations

import json
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
from copilot.retrieval.v1 import retrieval_pb2
from services.generation.agent import Agent, ToolsFailed, ToolUse
from services.generation.citations import cited_numbers, valid_citations
from services.generation.conversations import ConversationStore, Turn
from services.generation.engine import ChatMessage, Engine, EngineCatalog, GenerationParams
from services.generation.prompt import REFUSAL, SYSTEM_RULES, build_messages, build_rewrite_messages
from services.generation.tools import ToolCall
from services.generation.tools.documents import PassageSource
from services.generation.verification import SentenceCheck

#: Longest conversation id a client may send (ids we make are UUIDs); it also keys the Kafka events.
MAX_CONVERSATION_ID_CHARS = 128


def history_scope(audience: Sequence[common_pb2.Audience], uri_prefixes: Sequence[str]) -> str:
    """Who else an answer is for and which sources it may draw on. Turns share history only within one
    scope: an earlier answer, written from what its own audience may read, must not reach a later turn
    shown to someone who may read less, or limited to other sources."""
    readers = sorted("\n".join(sorted(member.acl_entries)) for member in audience)
    return json.dumps([readers, sorted(uri_prefixes)])


class InteractionSink(Protocol):
    def publish(self, event: events_pb2.InteractionEvent) -> None: ...


class RankingPassageSource(PassageSource, Protocol):
    """A passage source that also takes SearchRequest's ranking options (retrieval over gRPC)."""

    def search(
        self,
        token: str,
        query: str,
        top_k: int,
        audience: Sequence[common_pb2.Audience] = (),
        uri_prefixes: Sequence[str] = (),
        *,
        mode: retrieval_pb2.SearchMode = retrieval_pb2.SEARCH_MODE_UNSPECIFIED,
        rerank: bool = False,
    ) -> list[common_pb2.Passage]: ...


class Verifier(Protocol):
    def verify(self, answer: str, passages: Sequence[common_pb2.Passage]) -> list[SentenceCheck]: ...


def event_passages(
    passages: Sequence[common_pb2.Passage], principal: Principal, user_id: str
) -> list[common_pb2.Passage]:
    """The passages as the InteractionEvent carries them. Retrieval names a grant to the caller by username
    ("user:alice"); the event names the caller only by a pseudonym, so that entry is rewritten to
    "user:<pseudonym>". The monitor can then tell the caller's own user grant from anyone else's, and the
    username stays out of the event."""
    own = f"user:{principal.username}"
    published = []
    for passage in passages:
        if passage.access_reason == own:
            # A copy: the caller's reply keeps the passage as retrieval gave it.
            renamed = common_pb2.Passage()
            renamed.CopyFrom(passage)
            renamed.access_reason = f"user:{user_id}"
            passage = renamed
        published.append(passage)
    return published


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
    conversation_id: str
    sentences: list[SentenceCheck]
    # Every passage the model was given, numbered from 1 as in the prompt: a sentence's supported_by may
    # name one the answer does not cite.
    given: Sequence[common_pb2.Passage] = ()


@dataclass(frozen=True)
class AnswerPolicy:
    default_top_k: int = 4
    min_relevance: float = 0.45
    max_question_chars: int = 4000
    max_answer_tokens: int = 256
    # Room left in the context for the answer itself.
    answer_reserve_tokens: int = 320
    # A standalone question is one line; more than this means the model is answering, not rewriting.
    rewrite_max_tokens: int = 64
    # The rules the model answers by (the system message); a prompt variant replaces them.
    system_rules: str = SYSTEM_RULES


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
        source: RankingPassageSource,
        engines: EngineCatalog,
        sink: InteractionSink,
        policy: AnswerPolicy,
        pseudonym_key: bytes,
        verifier: Verifier | None = None,
        conversations: ConversationStore | None = None,
        agent: Agent | None = None,
    ) -> None:
        self._source = source
        self._engines = engines
        self._sink = sink
        self._policy = policy
        self._pseudonym_key = pseudonym_key
        self._verifier = verifier
        self._conversations = conversations
        self._agent = agent

    def answer(
        self,
        principal: Principal,
        question: str,
        conversation_id: str = "",
        top_k: int = 0,
        *,
        model: str = "",
        audience: Sequence[common_pb2.Audience] = (),
        use_tools: bool = False,
        uri_prefixes: Sequence[str] = (),
        search_mode: retrieval_pb2.SearchMode = retrieval_pb2.SEARCH_MODE_UNSPECIFIED,
        rerank: bool = False,
    ) -> Iterator[AnswerDelta | ToolUse | AnswerDone]:
        """``search_mode`` and ``rerank`` rank the passages the answer is written from, so that a search
        setting can be evaluated on the answers it leads to."""
        question = question.strip()
        if not question:
            raise InvalidInput("question is empty")
        if "\x00" in question:
            raise InvalidInput("question contains a NUL character")
        if len(conversation_id) > MAX_CONVERSATION_ID_CHARS:
            limit = MAX_CONVERSATION_ID_CHARS
            raise InvalidInput(f"conversation_id is {len(conversation_id)} characters; the limit is {limit}")
        if len(question) > self._policy.max_question_chars:
            raise InvalidInput(
                f"question is {len(question)} characters; the limit is {self._policy.max_question_chars}"
            )
        engine = self._engines.get(model)
        if use_tools and self._agent is None:
            raise InvalidInput("this server has no tools; ask without use_tools")
        ranked = search_mode != retrieval_pb2.SEARCH_MODE_UNSPECIFIED or rerank
        if use_tools and ranked:
            raise InvalidInput(
                "search_mode and rerank rank the answer's own search; with use_tools the tools search"
            )
        timings = _Timings()
        interaction_id = str(uuid.uuid4())
        scope = history_scope(audience, uri_prefixes)
        history = (
            self._conversations.history(principal.subject, conversation_id, scope)
            if self._conversations is not None and conversation_id
            else []
        )
        conversation_id = conversation_id or interaction_id
        # Retrieval sees one question at a time: "and for part-timers?" finds nothing on its own.
        query = self._standalone(engine, history, question) if history else question
        searching = timings.since_start_ms()
        if self._agent is not None and use_tools:
            findings = yield from self._agent.run(ToolCall(principal, audience, engine, uri_prefixes), query)
            if not findings.sources and findings.errors:
                raise ToolsFailed(
                    "the tools could not find an answer: " + "; ".join(dict.fromkeys(findings.errors))
                )
            relevant = findings.sources
        else:
            k = top_k or self._policy.default_top_k
            passages = self._source.search(
                principal.token, query, k, audience, uri_prefixes, mode=search_mode, rerank=rerank
            )
            relevant = [p for p in passages if p.score >= self._policy.min_relevance]
        timings.retrieval_ms = timings.since_start_ms() - searching

        if not relevant:
            # Same words whether nothing matched or nothing matched that the caller may read,
            # so the answer never reveals that an unreadable document exists.
            yield AnswerDelta(REFUSAL)
            self._report(
                engine, interaction_id, principal, conversation_id, question, REFUSAL, [], [], True, [],
                0, 0, timings,
            )  # fmt: skip
            self._remember(principal, conversation_id, scope, query, REFUSAL)
            yield AnswerDone(interaction_id, REFUSAL, [], True, engine.model_name, conversation_id, [])
            return

        budget = engine.context_tokens - self._policy.answer_reserve_tokens
        messages, kept = build_messages(
            question, relevant, engine.count_tokens_many, budget, history, self._policy.system_rules
        )
        given = relevant[:kept]
        parts: list[str] = []
        prompt_tokens = completion_tokens = 0
        params = GenerationParams(max_tokens=self._policy.max_answer_tokens, temperature=0.0)
        try:
            for delta in engine.stream_chat([ChatMessage(m["role"], m["content"]) for m in messages], params):
                if delta.text:
                    if not parts:
                        timings.first_token_ms = timings.since_start_ms()
                    parts.append(delta.text)
                    yield AnswerDelta(delta.text)
                prompt_tokens, completion_tokens = delta.prompt_tokens, delta.completion_tokens
        except GeneratorExit:
            # The caller cancelled (or hung up) mid-answer: what they were sent is still an interaction,
            # and the monitor must see it, or cancelling after the last token would hide any answer.
            partial = "".join(parts).strip()
            self._report(
                engine, interaction_id, principal, conversation_id, question, partial, given,
                cited_numbers(partial), False, [], prompt_tokens, completion_tokens, timings,
                interrupted=True,
            )  # fmt: skip
            raise
        answer = "".join(parts).strip()
        refused = not answer or (REFUSAL.lower().rstrip(".") in answer.lower() and not cited_numbers(answer))
        numbers = [] if refused else valid_citations(answer, len(given))
        citations = [(n, given[n - 1]) for n in numbers]
        sentences = self._verifier.verify(answer, given) if self._verifier and not refused else []
        self._report(
            engine,
            interaction_id,
            principal,
            conversation_id,
            question,
            answer,
            given,
            cited_numbers(answer),
            refused,
            sentences,
            prompt_tokens,
            completion_tokens,
            timings,
        )
        self._remember(principal, conversation_id, scope, query, answer)
        yield AnswerDone(
            interaction_id, answer, citations, refused, engine.model_name, conversation_id, sentences, given
        )

    def _standalone(self, engine: Engine, history: Sequence[Turn], question: str) -> str:
        budget = engine.context_tokens - self._policy.answer_reserve_tokens
        messages = build_rewrite_messages(history, question, engine.count_tokens_many, budget)
        params = GenerationParams(max_tokens=self._policy.rewrite_max_tokens, temperature=0.0, stop=("\n",))
        rewritten = "".join(
            d.text
            for d in engine.stream_chat([ChatMessage(m["role"], m["content"]) for m in messages], params)
        ).strip()
        # An empty or rambling rewrite is worse for retrieval than the follow-up as asked.
        if not rewritten or len(rewritten) > 3 * len(question):
            return question
        return rewritten

    def _remember(
        self, principal: Principal, conversation_id: str, scope: str, query: str, answer: str
    ) -> None:
        # The standalone form is kept: the next follow-up is rewritten against it, and it needs no
        # earlier turn to be understood once those have been dropped.
        if self._conversations is not None:
            self._conversations.append(principal.subject, conversation_id, Turn(query, answer), scope)

    def _report(
        self,
        engine: Engine,
        interaction_id: str,
        principal: Principal,
        conversation_id: str,
        question: str,
        answer: str,
        passages: Sequence[common_pb2.Passage],
        cited: list[int],
        refused: bool,
        sentences: list[SentenceCheck],
        prompt_tokens: int,
        completion_tokens: int,
        timings: _Timings,
        interrupted: bool = False,
    ) -> None:
        occurred = Timestamp()
        occurred.GetCurrentTime()
        user_id = principal.pseudonym(self._pseudonym_key)
        self._sink.publish(
            events_pb2.InteractionEvent(
                event_id=interaction_id,
                occurred_at=occurred,
                user_id=user_id,
                groups=list(principal.groups),
                roles=sorted(principal.roles),
                tenant=principal.tenant,
                conversation_id=conversation_id,
                question=question,
                answer=answer,
                passages=event_passages(passages, principal, user_id),
                cited_sources=cited,
                refused=refused,
                model=engine.model_name,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                retrieval_ms=timings.retrieval_ms,
                first_token_ms=timings.first_token_ms,
                total_ms=timings.since_start_ms(),
                sentences=[
                    events_pb2.SentenceSupport(
                        text=s.text,
                        cited=s.cited,
                        support=s.support,
                        verdict=events_pb2.SupportVerdict.Value(f"SUPPORT_VERDICT_{s.verdict.upper()}"),
                        supported_by=s.supported_by,
                    )
                    for s in sentences
                ],
                interrupted=interrupted,
            )
        )
