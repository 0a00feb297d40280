"""Slack Block Kit and Teams Adaptive Card rendering of answers, and the Slack message throttle."""

from __future__ import annotations

import json
from typing import Any

from copilot.common.v1 import common_pb2
from copilot.generation.v1 import generation_pb2
from services.bots.core import CHANNEL_SCOPE_NOTE, PROBLEM_IN_CHANNEL, Answer, Source
from services.bots.generation_client import answer_from_final, link_template
from services.bots.slack import SlackReply
from services.bots.slack_blocks import CONTEXT_ELEMENTS, SECTION_CHARS, answer_blocks, escape, problem_blocks
from services.bots.teams_cards import answer_card

MEMO = Source(1, "Q3 <budget> memo", "finance/memo.md", "https://docs.acme.example/memo")
LOCAL = Source(2, "Runbook", "engineering/runbook.md", "")
ANSWER = Answer(
    "The budget is **412,000** [1] & rising [2] [7].", False, (MEMO, LOCAL), "iid-9", "conv", doubtful=2
)


def test_slack_answer_links_citations_lists_sources_and_offers_feedback() -> None:
    blocks = answer_blocks(ANSWER)
    text = blocks[0]["text"]["text"]
    assert text == "The budget is *412,000* <https://docs.acme.example/memo|[1]> &amp; rising [2] [7]."
    sources = next(b for b in blocks if b.get("block_id") == "copilot_sources")["elements"]
    assert [e["text"] for e in sources] == [
        "*Sources*",
        "[1] <https://docs.acme.example/memo|Q3 &lt;budget&gt; memo>",
        "[2] Runbook (`engineering/runbook.md`)",
    ]
    notes = json.dumps([b for b in blocks if b["type"] == "context" and not b.get("block_id")])
    assert "2 sentences are not supported" in notes and CHANNEL_SCOPE_NOTE not in notes
    actions = blocks[-1]
    assert actions["type"] == "actions" and {e["value"] for e in actions["elements"]} == {"iid-9"}
    assert actions["elements"][2]["style"] == "danger"


def test_a_wrong_citation_points_the_reader_at_the_source_that_supports_the_sentence() -> None:
    # Two sentences cite the runbook for what the memo says: the memo is named once.
    answer = Answer("Travel is capped [2]. Hiring is frozen [2].", False, (LOCAL,), "iid", "conv", doubtful=0,
                    supported_instead_by=(MEMO, MEMO))  # fmt: skip

    slack_notes = [
        e["text"] for b in answer_blocks(answer) if b["type"] == "context" and not b.get("block_id")
        for e in b["elements"]
    ]  # fmt: skip
    teams_body = [b["text"] for b in answer_card(answer)["body"]]

    assert slack_notes == [
        ":pushpin: A sentence cites the wrong source; "
        "[1] <https://docs.acme.example/memo|Q3 &lt;budget&gt; memo> supports it."
    ]
    assert teams_body[-1] == (
        "📌 A sentence cites the wrong source; "
        "[1] [Q3 <budget> memo](https://docs.acme.example/memo) supports it."
    )
    assert not any("not supported" in line for line in [*slack_notes, *teams_body])


def test_slack_long_answers_split_into_sections_within_slacks_limit() -> None:
    long = Answer("x" * (SECTION_CHARS * 2 + 10), False, (), "", "", scope="channel")
    blocks = answer_blocks(long, note="private")
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) == 3 and all(len(s["text"]["text"]) <= SECTION_CHARS for s in sections)
    assert not any(b["type"] == "actions" for b in blocks), "no interaction id, nothing to rate"
    assert CHANNEL_SCOPE_NOTE in json.dumps(blocks) and ":lock: private" in json.dumps(blocks)


def test_slack_lists_every_source_across_as_many_context_blocks_as_needed() -> None:
    sources = tuple(Source(n, f"Doc {n}", f"docs/{n}.md", f"https://docs/{n}") for n in range(1, 13))
    blocks = answer_blocks(Answer("Many [12].", False, sources, "iid", "conv"))
    listed = [b for b in blocks if str(b.get("block_id", "")).startswith("copilot_sources")]
    assert len(listed) == 2 and all(len(b["elements"]) <= CONTEXT_ELEMENTS for b in listed)
    assert len({b["block_id"] for b in listed}) == 2, "Slack rejects repeated block ids"
    lines = [e["text"] for b in listed for e in b["elements"]]
    assert lines[0] == "*Sources*"
    assert lines[1:] == [f"[{n}] <https://docs/{n}|Doc {n}>" for n in range(1, 13)]


def test_slack_escapes_problem_messages() -> None:
    assert problem_blocks("a <b> & c")[0]["text"]["text"] == ":warning: a &lt;b&gt; &amp; c"
    assert escape("<@U123>") == "&lt;@U123&gt;", "a model cannot mention or ping anyone"


def test_teams_card_has_linked_sources_notes_and_submit_actions() -> None:
    card = answer_card(ANSWER, note="only you")
    body = [b["text"] for b in card["body"]]
    assert body[0] == "The budget is **412,000** [\\[1\\]](https://docs.acme.example/memo) & rising [2] [7]."
    assert "[1] [Q3 <budget> memo](https://docs.acme.example/memo)" in body
    assert "[2] Runbook (engineering/runbook.md)" in body
    assert any("only you" in b for b in body)
    assert [a["data"] for a in card["actions"]] == [
        {"copilot_feedback": r, "interaction_id": "iid-9"} for r in ("positive", "negative", "report")
    ]


class RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def chat_postMessage(self, **kwargs: Any) -> dict[str, str]:  # noqa: N802
        self.calls.append(("post", kwargs))
        return {"ts": "1.1"}

    def chat_update(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(("update", kwargs))
        return {"ts": kwargs["ts"]}

    def chat_postEphemeral(self, **kwargs: Any) -> dict[str, str]:  # noqa: N802
        self.calls.append(("ephemeral", kwargs))
        return {}


def test_slack_streaming_updates_at_most_once_per_interval_and_always_shows_the_final() -> None:
    now = [0.0]
    client = RecordingClient()
    reply = SlackReply(client, "C1", "U1", "1.0", "channel", 1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    reply.start()
    for step, text in enumerate(["a", "ab", "abc", "abcd"]):
        now[0] = step * 0.4
        reply.stream(text)
    reply.answer(ANSWER)
    kinds = [k for k, _ in client.calls]
    assert kinds == ["post", "update", "update", "update"]
    assert [c["text"] for k, c in client.calls[1:3]] == ["a :writing_hand:", "abcd :writing_hand:"]
    assert client.calls[-1][1]["blocks"] and client.calls[-1][1]["ts"] == "1.1"


def test_slack_problems_in_a_channel_go_to_the_asker_alone() -> None:
    client = RecordingClient()
    reply = SlackReply(client, "C1", "U1", "1.0", "channel", 0.0)  # type: ignore[arg-type]
    reply.start()
    reply.problem("No account for dave@elsewhere.example (reference abc)")
    kinds = [k for k, _ in client.calls]
    assert kinds == ["post", "update", "ephemeral"]
    assert client.calls[1][1]["text"] == PROBLEM_IN_CHANNEL and client.calls[1][1]["ts"] == "1.1"
    told = client.calls[2][1]
    assert told["user"] == "U1" and "dave@elsewhere.example" in told["text"]


def test_slack_problems_in_a_dm_stay_in_the_dm() -> None:
    client = RecordingClient()
    reply = SlackReply(client, "D1", "U1", None, "dm", 0.0)  # type: ignore[arg-type]
    reply.problem("Ask IT.")
    assert [(k, c["channel"], c["text"]) for k, c in client.calls] == [("post", "D1", "Ask IT.")]


def test_slack_ephemeral_replies_post_once_and_never_stream() -> None:
    client = RecordingClient()
    reply = SlackReply(client, "C1", "U1", "1.0", "private", 0.0)  # type: ignore[arg-type]
    reply.start()
    reply.stream("partial")
    reply.answer(ANSWER)
    assert [k for k, _ in client.calls] == ["ephemeral"]
    assert client.calls[0][1]["user"] == "U1" and client.calls[0][1]["thread_ts"] == "1.0"


def test_a_chat_answer_counts_claims_no_source_supports_apart_from_wrong_citations() -> None:
    memo = generation_pb2.Citation(
        number=1, passage=common_pb2.Passage(title="Budget memo", uri="https://docs.acme.example/memo")
    )
    runbook = generation_pb2.Citation(number=2, passage=common_pb2.Passage(title="Runbook", uri="runbook.md"))
    g = generation_pb2
    final = g.AnswerFinal(
        answer="a",
        citations=[runbook],
        sentences=[
            g.SentenceCheck(verdict=g.SUPPORT_VERDICT_SUPPORTED),
            g.SentenceCheck(verdict=g.SUPPORT_VERDICT_UNSUPPORTED, supported_by=[memo]),  # a wrong citation
            g.SentenceCheck(verdict=g.SUPPORT_VERDICT_UNSUPPORTED),
            g.SentenceCheck(verdict=g.SUPPORT_VERDICT_INVALID),
            g.SentenceCheck(verdict=g.SUPPORT_VERDICT_UNCITED, supported_by=[memo]),
        ],
    )

    answer = answer_from_final(final, link_template(""))

    assert answer.doubtful == 2
    assert answer.supported_instead_by == (Source(1, "Budget memo", memo.passage.uri, memo.passage.uri),)
    assert answer.sources == (Source(2, "Runbook", "runbook.md", ""),)
