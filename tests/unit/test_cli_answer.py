"""What `copilot ask` tells a reader to check, from the sentence checks in an answer."""

from __future__ import annotations

from copilot.cli import doubtful_sentence_lines
from copilot.common.v1 import common_pb2
from copilot.generation.v1 import generation_pb2 as g

BUDGET = g.Citation(
    number=1,
    passage=common_pb2.Passage(
        title="Budget Memo", heading_path=["Budget Memo", "Budget by line"], uri="memo.md", score=0.76
    ),
)


def sentence(
    text: str, verdict: g.SupportVerdict, support: float = 0.0, *supporters: g.Citation
) -> g.SentenceCheck:
    return g.SentenceCheck(text=text, verdict=verdict, support=support, supported_by=supporters)


def test_doubtful_sentences_come_with_the_source_that_does_support_them() -> None:
    final = g.AnswerFinal(
        sentences=[
            sentence("Here is what I found:", g.SUPPORT_VERDICT_UNCITED),
            sentence("Travel is 60,000 USD. [2]", g.SUPPORT_VERDICT_UNSUPPORTED, 0.31, BUDGET),
            sentence("Hotels are free. [2]", g.SUPPORT_VERDICT_UNSUPPORTED, 0.12),
            sentence("The budget is down 8%.", g.SUPPORT_VERDICT_UNCITED, 0.0, BUDGET),
            sentence("Cloud is 1.35M USD. [1]", g.SUPPORT_VERDICT_SUPPORTED, 0.9),
            sentence("See [7].", g.SUPPORT_VERDICT_INVALID, 0.0),
        ]
    )
    source = "[1] Budget Memo > Budget by line  [dim]memo.md (score 0.76)[/dim]"

    assert doubtful_sentence_lines(final) == [
        "  (unsupported, support 0.31) Travel is 60,000 USD. [2]",
        f"    [dim]supported instead by[/dim] {source}",
        "  (unsupported, support 0.12) Hotels are free. [2]",
        "  (uncited) The budget is down 8%.",
        f"    [dim]supported by[/dim] {source}",
        "  (invalid, support 0.00) See [7].",
    ]


def test_a_well_supported_answer_asks_for_no_check() -> None:
    final = g.AnswerFinal(sentences=[sentence("Cloud is 1.35M USD. [1]", g.SUPPORT_VERDICT_SUPPORTED, 0.9)])

    assert doubtful_sentence_lines(final) == []
