"""Answerer with the real SmolLM2-135M engine and the real MiniLM embedder for citation checks.

Test doubles, all in-process: ``FixedPassages`` stands in for retrieval (it returns the same sample
passages for any query and records the queries and audiences it gets), ``UnavailablePassages`` for a
retrieval service that is down, and ``Events`` collects the InteractionEvents the Kafka publisher would
send. ``Recorded`` is not a double: it passes every call to the real engine and keeps the messages, so
the tests can see which model calls an answer made (and, given another name, which model was picked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from copilot.auth import Principal
from copilot.common.v1 import common_pb2
from copilot.embedding import MiniLmEmbedder
from copilot.errors import DependencyUnavailable, InvalidInput
from copilot.events.v1 import events_pb2
from copilot.retrieval.v1 import retrieval_pb2
from services.generation.agent import Agent, ToolsFailed, ToolUse
from services.generation.answerer import AnswerDelta, AnswerDone, Answerer, AnswerPolicy
from services.generation.conversations import ConversationStore
from services.generation.engine import (
    ChatMessage,
    Engine,
    EngineCatalog,
    build_engine,
)
from services.generation.prompt import REFUSAL
from services.generation.tools import Toolbox
from services.generation.tools.documents import SearchDocuments
from services.generation.verification import CitationVerifier, split_sentences
from tests.integration.generation_standins import Events, Recorded

ALICE = Principal(
    subject="sub-alice",
    username="alice",
    tenant="acme",
    groups=("hr",),
    roles=frozenset({"copilot-user", "auditor"}),
    token="alice-token",
)
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
    audiences: list[list[common_pb2.Audience]] = field(default_factory=list)
    prefixes: list[list[str]] = field(default_factory=list)

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
    ) -> list[common_pb2.Passage]:
        self.queries.append(query)
        self.audiences.append(list(audience))
        self.prefixes.append(list(uri_prefixes))
        return self.passages[:top_k]


class UnavailablePassages:
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
    ) -> list[common_pb2.Passage]:
        raise DependencyUnavailable("retrieval at 127.0.0.1:1 failed: UNAVAILABLE")


@pytest.fixture(scope="module")
def real_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return build_engine("llama_cpp", "smollm2-135m", tmp_path_factory.mktemp("models"), 2, 2048)


@pytest.fixture(scope="module")
def verifier() -> CitationVerifier:
    return CitationVerifier(MiniLmEmbedder())


@dataclass
class Setup:
    answerer: Answerer
    engine: Recorded
    # The same model under another name, standing in for a second configured model.
    second: Recorded
    source: FixedPassages
    events: Events


def build_answerer(
    source: FixedPassages | UnavailablePassages,
    engines: EngineCatalog,
    events: Events,
    verifier: CitationVerifier,
    agent_steps: int = 0,
    policy: AnswerPolicy | None = None,
) -> Answerer:
    return Answerer(
        source,
        engines,
        events,
        policy or AnswerPolicy(max_answer_tokens=48),
        b"test-key",
        verifier=verifier,
        conversations=ConversationStore(max_conversations=8, max_turns=4),
        agent=Agent(Toolbox([SearchDocuments(source, 4, 0.45)]), agent_steps) if agent_steps else None,
    )


@pytest.fixture
def setup(real_engine: Engine, verifier: CitationVerifier) -> Setup:
    engine, second = Recorded(real_engine), Recorded(real_engine, "second-model")
    source, events = FixedPassages([VACATION]), Events()
    catalog = EngineCatalog({"smollm2-135m": engine, "second-model": second}, "smollm2-135m")
    return Setup(
        build_answerer(source, catalog, events, verifier, agent_steps=2), engine, second, source, events
    )


def ask(
    answerer: Answerer, principal: Principal, question: str, conversation_id: str = "", **options: object
) -> AnswerDone:
    pieces = list(answerer.answer(principal, question, conversation_id, 0, **options))  # type: ignore[arg-type]
    done = pieces[-1]
    assert isinstance(done, AnswerDone)
    assert all(isinstance(p, AnswerDelta | ToolUse) for p in pieces[:-1])
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
    # What the monitor's ACL check needs: the caller's groups and the roles retrieval may map to groups.
    assert list(event.groups) == ["hr"] and list(event.roles) == ["auditor", "copilot-user"]
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


@pytest.mark.parametrize(
    ("narrowed", "why"),
    [
        ({"audience": [common_pb2.Audience(acl_entries=["everyone", "user:bob"])]}, "bob may read less"),
        ({"uri_prefixes": ["everyone/"]}, "the sources are limited"),
    ],
)
def test_history_does_not_cross_into_a_turn_narrowed_differently(
    setup: Setup, narrowed: dict[str, object], why: str
) -> None:
    """The first answer was written from what alice alone may read; a follow-up shown to bob too (a bot
    channel), or limited to other sources, must not get it back through the history."""
    first = ask(setup.answerer, ALICE, FIRST_QUESTION)
    setup.engine.calls.clear()

    ask(setup.answerer, ALICE, "And part-time ones?", first.conversation_id, **narrowed)

    (call,) = setup.engine.calls  # no rewrite: no history in this scope
    assert not mentions(call, FIRST_QUESTION), why
    # Asked the same way again, the conversation goes on with its own history.
    setup.engine.calls.clear()
    ask(setup.answerer, ALICE, "And interns?", first.conversation_id)
    assert mentions(setup.engine.calls[-1], FIRST_QUESTION)


@pytest.mark.parametrize(
    ("question", "conversation_id", "message"),
    [
        ("What is the\x00 travel budget?", "", "question contains a NUL character"),
        (FIRST_QUESTION, "c" * 129, "conversation_id is 129 characters; the limit is 128"),
    ],
)
def test_bad_questions_and_conversation_ids_are_invalid_input(
    setup: Setup, question: str, conversation_id: str, message: str
) -> None:
    """A NUL cannot be stored by the monitor's PostgreSQL, and a conversation id keys the Kafka events:
    a 3 MB one made the interaction event too large to publish, hiding it from the monitor."""
    with pytest.raises(InvalidInput, match=message):
        ask(setup.answerer, ALICE, question, conversation_id)
    assert setup.events.published == []


def test_an_answer_the_caller_cancels_mid_stream_still_reaches_the_monitor(setup: Setup) -> None:
    """Cancelling after the last token must not keep an answer from the monitor."""
    pieces = setup.answerer.answer(ALICE, FIRST_QUESTION)
    first = next(p for p in pieces if isinstance(p, AnswerDelta))
    pieces.close()  # what gRPC does to the handler's generator when the caller cancels

    (event,) = setup.events.published
    assert event.interrupted and event.question == FIRST_QUESTION
    assert event.answer == first.text.strip() and not event.sentences
    assert list(event.passages), "what the answer was being written from is there to review"


def test_a_refusal_needs_no_model_call_and_still_names_the_conversation(setup: Setup) -> None:
    setup.source.passages = [common_pb2.Passage(chunk_id="x", text="Unrelated.", score=0.1)]

    done = ask(setup.answerer, ALICE, FIRST_QUESTION, "conv-1")

    assert (done.answer, done.refused, done.conversation_id, done.sentences) == (REFUSAL, True, "conv-1", [])
    assert setup.engine.calls == []
    assert list(setup.events.published[0].sentences) == []


def test_the_request_picks_the_model_and_the_default_is_the_first(setup: Setup) -> None:
    default = ask(setup.answerer, ALICE, FIRST_QUESTION)
    picked = ask(setup.answerer, ALICE, FIRST_QUESTION, model="second-model")

    assert (default.model, picked.model) == ("smollm2-135m", "second-model")
    assert (len(setup.engine.calls), len(setup.second.calls)) == (1, 1)
    assert [e.model for e in setup.events.published] == ["smollm2-135m", "second-model"]


def test_an_unknown_model_is_refused_naming_the_ones_there_are(setup: Setup) -> None:
    with pytest.raises(
        InvalidInput, match="unknown model 'gpt-9'; this server has smollm2-135m, second-model"
    ):
        ask(setup.answerer, ALICE, FIRST_QUESTION, model="gpt-9")
    assert setup.source.queries == []


def test_the_audience_goes_to_retrieval_unchanged(setup: Setup) -> None:
    audience = [common_pb2.Audience(acl_entries=["user:bob", "group:engineering", "everyone"])]

    ask(setup.answerer, ALICE, FIRST_QUESTION, audience=audience)

    assert setup.source.audiences == [audience]


def test_a_question_too_long_for_the_models_context_is_invalid_input(
    real_engine: Engine, verifier: CitationVerifier
) -> None:
    answerer = build_answerer(
        FixedPassages([VACATION]),
        EngineCatalog({"smollm2-135m": real_engine}, "smollm2-135m"),
        Events(),
        verifier,
        policy=AnswerPolicy(max_question_chars=100_000),
    )
    question = "Tell me everything about the vacation policy, please. " * 300  # about 3,000 tokens

    with pytest.raises(InvalidInput, match=r"the question is \d+ tokens; .* room for \d+"):
        list(answerer.answer(ALICE, question))


def test_with_tools_the_model_searches_and_answers_from_what_it_found(setup: Setup) -> None:
    pieces = list(setup.answerer.answer(ALICE, FIRST_QUESTION, use_tools=True))

    tool_uses = [p for p in pieces if isinstance(p, ToolUse)]
    assert tool_uses and tool_uses[0].name == "search_documents" and not tool_uses[0].failed
    assert tool_uses[0].result == "1 passage(s) from Vacation and Leave Policy"
    assert setup.source.queries  # the model's own query words
    done = pieces[-1]
    assert isinstance(done, AnswerDone)
    assert list(setup.events.published[0].passages) == [VACATION]
    assert mentions(setup.engine.calls[-1], "Full-time employees accrue 25 days")  # the answer prompt


def test_tool_errors_go_back_to_the_model_then_to_the_caller(
    real_engine: Engine, verifier: CitationVerifier
) -> None:
    engine = Recorded(real_engine)
    answerer = build_answerer(
        UnavailablePassages(), EngineCatalog({"smollm2-135m": engine}, "smollm2-135m"), Events(), verifier, 2
    )
    pieces: list[object] = []

    with pytest.raises(ToolsFailed, match="search_documents: document search is unavailable"):
        for piece in answerer.answer(ALICE, FIRST_QUESTION, use_tools=True):
            pieces.append(piece)

    assert pieces and all(isinstance(p, ToolUse) and p.failed for p in pieces)
    if len(engine.calls) > 1:  # the model had a second step, and saw the error there
        assert mentions(engine.calls[1], "search_documents failed: document search is unavailable")


def test_tools_on_a_server_without_them_is_invalid_input(
    real_engine: Engine, verifier: CitationVerifier
) -> None:
    answerer = build_answerer(
        FixedPassages([VACATION]),
        EngineCatalog({"smollm2-135m": real_engine}, "smollm2-135m"),
        Events(),
        verifier,
    )
    with pytest.raises(InvalidInput, match="no tools"):
        list(answerer.answer(ALICE, FIRST_QUESTION, use_tools=True))
