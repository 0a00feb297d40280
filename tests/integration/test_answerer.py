"""Answerer with the real SmolLM2-135M engine and the real MiniLM embedder for citation checks.

Two test doubles, both in-process: ``FixedPassages`` stands in for retrieval (it returns the same sample
passages for any query and records the queries it gets), and ``Events`` collects the InteractionEvents
the Kafka publisher would send. ``Recorded`` is not a double: it passes every call to the real engine and
keeps the messages, so the tests can see which model calls an answer made.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from copilot.auth import Principal
from copilot.common.v1 import common_pb2
from copilot.embedding import OnnxMiniLmEmbedder
from copilot.events.v1 import events_pb2
from services.generation.answerer import AnswerDelta, AnswerDone, Answerer, AnswerPolicy
from services.generation.conversations import ConversationStore
from services.generation.engine import ChatMessage, Engine, GenerationParams, TokenDelta, build_engine
from services.generation.prompt import REFUSAL
from services.generation.verification import CitationVerifier, split_sentences

ALICE = Principal(subject="sub-alice", username="alice", tenant="acme", token="alice-token")
MALLORY = Principal(subject="sub-mallory", username="mallory", tenant="acme", token="mallory-token")
FIRST_QUESTION = "How many vacation days do full-time employees get?"
VACATION = common_pb2.Passage(
    chunk_id="vacation#0",
    document_id="vacation",
    title="Vacation and Leave Policy",
    heading_path=["Vacation and Leave Policy", "Annual vacation allowance"],
    text="Full-time employees accrue 25 days of paid vacation per calendar year, credited at 2.08 days "
    "per month. Part-time employees accrue vacation pro rata to their contracted hours.",
    score=0.8,
)


@dataclass
class FixedPassages:
    passages: list[common_pb2.Passage]
    queries: list[str] = field(default_factory=list)

    def search(self, token: str, query: str, top_k: int) -> list[common_pb2.Passage]:
        self.queries.append(query)
        return self.passages[:top_k]


@dataclass
class Events:
    published: list[events_pb2.InteractionEvent] = field(default_factory=list)

    def publish(self, event: events_pb2.InteractionEvent) -> None:
        self.published.append(event)


class Recorded:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.model_name = engine.model_name
        self.context_tokens = engine.context_tokens
        self.calls: list[list[ChatMessage]] = []

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        self.calls.append(list(messages))
        return self._engine.stream_chat(messages, params)


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return build_engine("llama_cpp", "smollm2-135m", tmp_path_factory.mktemp("models"), 2, 2048)


@pytest.fixture(scope="module")
def verifier() -> CitationVerifier:
    return CitationVerifier(OnnxMiniLmEmbedder())


@dataclass
class Setup:
    answerer: Answerer
    engine: Recorded
    source: FixedPassages
    events: Events


@pytest.fixture
def setup(real_engine: Engine, verifier: CitationVerifier) -> Setup:
    engine, source, events = Recorded(real_engine), FixedPassages([VACATION]), Events()
    answerer = Answerer(
        source,
        engine,
        events,
        AnswerPolicy(max_answer_tokens=48),
        b"test-key",
        verifier=verifier,
        conversations=ConversationStore(max_conversations=8, max_turns=4),
    )
    return Setup(answerer, engine, source, events)


def ask(answerer: Answerer, principal: Principal, question: str, conversation_id: str = "") -> AnswerDone:
    pieces = list(answerer.answer(principal, question, conversation_id, 0))
    done = pieces[-1]
    assert isinstance(done, AnswerDone)
    assert all(isinstance(p, AnswerDelta) for p in pieces[:-1])
    return done


def mentions(call: list[ChatMessage], text: str) -> bool:
    return any(text in m.content for m in call)


def test_an_answer_comes_with_its_conversation_and_a_check_of_every_sentence(setup: Setup) -> None:
    done = ask(setup.answerer, ALICE, FIRST_QUESTION)

    assert done.conversation_id == done.interaction_id  # a new conversation is named after its first answer
    assert len(setup.engine.calls) == 1  # nothing to rewrite without history
    assert setup.source.queries == [FIRST_QUESTION]
    if not done.refused:
        assert [s.text for s in done.sentences] == split_sentences(done.answer)
    (event,) = setup.events.published
    assert event.conversation_id == done.conversation_id
    assert [(s.text, list(s.cited), s.verdict) for s in event.sentences] == [
        (s.text, s.cited, events_pb2.SupportVerdict.Value(f"SUPPORT_VERDICT_{s.verdict.upper()}"))
        for s in done.sentences
    ]


def test_a_follow_up_is_rewritten_before_retrieval_and_answered_with_the_history(setup: Setup) -> None:
    first = ask(setup.answerer, ALICE, FIRST_QUESTION)
    setup.engine.calls.clear()

    second = ask(setup.answerer, ALICE, "And part-time ones?", first.conversation_id)

    assert second.conversation_id == first.conversation_id
    rewrite, answer = setup.engine.calls
    assert mentions(rewrite, FIRST_QUESTION) and mentions(rewrite, "And part-time ones?")
    assert mentions(answer, FIRST_QUESTION)  # the earlier turn is in the answer prompt
    query = setup.source.queries[-1]
    assert query  # the rewrite, or the question as asked when the rewrite was unusable
    assert len(query) <= 3 * len("And part-time ones?")


def test_another_user_with_the_same_conversation_id_does_not_see_the_history(setup: Setup) -> None:
    first = ask(setup.answerer, ALICE, FIRST_QUESTION)
    setup.engine.calls.clear()

    ask(setup.answerer, MALLORY, "What did I ask before?", first.conversation_id)

    (call,) = setup.engine.calls  # no rewrite: mallory has no history in this conversation
    assert not mentions(call, FIRST_QUESTION)
    assert setup.source.queries[-1] == "What did I ask before?"


def test_a_refusal_needs_no_model_call_and_still_names_the_conversation(setup: Setup) -> None:
    setup.source.passages = [common_pb2.Passage(chunk_id="x", text="Unrelated.", score=0.1)]

    done = ask(setup.answerer, ALICE, FIRST_QUESTION, "conv-1")

    assert (done.answer, done.refused, done.conversation_id, done.sentences) == (REFUSAL, True, "conv-1", [])
    assert setup.engine.calls == []
    assert list(setup.events.published[0].sentences) == []
