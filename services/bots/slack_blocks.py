"""Answers as Slack Block Kit: the text with linked [n] markers, a "sources" context block, notes, and
feedback buttons whose value is the interaction id."""

from __future__ import annotations

import re
from typing import Any

from services.bots.core import CHANNEL_SCOPE_NOTE, Answer

CITATION = re.compile(r"\[(\d+)\]")
# Slack rejects section text over 3000 characters and context blocks with more than 10 elements.
SECTION_CHARS = 3000
CONTEXT_ELEMENTS = 10
FEEDBACK_ACTIONS = {
    "positive": ":thumbsup: Helpful",
    "negative": ":thumbsdown: Not helpful",
    "report": "Report a problem",
}
FEEDBACK_ACTION_PREFIX = "copilot_feedback_"
STREAMING_MARK = " :writing_hand:"

Block = dict[str, Any]


def escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str) -> str:
    # Models write Markdown bold; Slack's bold is a single asterisk.
    return re.sub(r"\*\*(.+?)\*\*", r"*\1*", escape(text))


def answer_mrkdwn(answer: Answer) -> str:
    links = {s.number: s.link for s in answer.sources if s.link}

    def linked(match: re.Match[str]) -> str:
        number = int(match.group(1))
        return f"<{links[number]}|[{number}]>" if number in links else match.group(0)

    return CITATION.sub(linked, mrkdwn(answer.text))


def streaming_text(text: str) -> str:
    return mrkdwn(text) + STREAMING_MARK


def _sections(text: str) -> list[Block]:
    chunks = [text[i : i + SECTION_CHARS] for i in range(0, len(text), SECTION_CHARS)] or [" "]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}} for chunk in chunks]


def source_line(number: int, title: str, uri: str, link: str) -> str:
    if link:
        return f"[{number}] <{link}|{escape(title)}>"
    if uri and uri != title:
        return f"[{number}] {escape(title)} (`{escape(uri)}`)"
    return f"[{number}] {escape(title)}"


def answer_blocks(answer: Answer, note: str = "") -> list[Block]:
    blocks = _sections(answer_mrkdwn(answer))
    if answer.sources:
        elements = [{"type": "mrkdwn", "text": "*Sources*"}] + [
            {"type": "mrkdwn", "text": source_line(s.number, s.title, s.uri, s.link)} for s in answer.sources
        ]
        # As many context blocks as it takes; block ids must be unique within a message.
        for start in range(0, len(elements), CONTEXT_ELEMENTS):
            block_id = "copilot_sources" if start == 0 else f"copilot_sources_{start // CONTEXT_ELEMENTS + 1}"
            chunk = elements[start : start + CONTEXT_ELEMENTS]
            blocks.append({"type": "context", "block_id": block_id, "elements": chunk})
    notes = []
    if answer.doubtful:
        plural = "s are" if answer.doubtful > 1 else " is"
        notes.append(f":warning: {answer.doubtful} sentence{plural} not supported by the sources cited.")
    for source in dict.fromkeys(answer.supported_instead_by):
        line = source_line(source.number, source.title, source.uri, source.link)
        notes.append(f":pushpin: A sentence cites the wrong source; {line} supports it.")
    if answer.scope == "channel":
        notes.append(CHANNEL_SCOPE_NOTE)
    if note:
        notes.append(f":lock: {note}")
    if notes:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": n} for n in notes]})
    if answer.interaction_id:
        blocks.append(
            {
                "type": "actions",
                "block_id": "copilot_feedback",
                "elements": [
                    {
                        "type": "button",
                        "action_id": FEEDBACK_ACTION_PREFIX + rating,
                        "text": {"type": "plain_text", "text": label, "emoji": True},
                        "value": answer.interaction_id,
                        **({"style": "danger"} if rating == "report" else {}),
                    }
                    for rating, label in FEEDBACK_ACTIONS.items()
                ],
            }
        )
    return blocks


def answer_fallback(answer: Answer) -> str:
    """The plain text Slack shows in notifications and to clients without blocks."""
    sources = "; ".join(f"[{s.number}] {s.title}" for s in answer.sources)
    return answer.text + (f"\nSources: {sources}" if sources else "")


def problem_blocks(message: str) -> list[Block]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": f":warning: {escape(message)}"}}]
