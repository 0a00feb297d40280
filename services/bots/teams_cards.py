"""Answers as Adaptive Cards for Teams: the text with linked [n] markers, the sources, notes and feedback
buttons (Action.Submit carrying the interaction id)."""

from __future__ import annotations

import re
from typing import Any

from services.bots.core import CHANNEL_SCOPE_NOTE, Answer, Source

CITATION = re.compile(r"\[(\d+)\]")
FEEDBACK_KEY = "copilot_feedback"
FEEDBACK_ACTIONS = {"positive": "👍 Helpful", "negative": "👎 Not helpful", "report": "Report a problem"}

Card = dict[str, Any]


def _linked_text(answer: Answer) -> str:
    links = {s.number: s.link for s in answer.sources if s.link}

    def linked(match: re.Match[str]) -> str:
        number = int(match.group(1))
        return f"[\\[{number}\\]]({links[number]})" if number in links else match.group(0)

    return CITATION.sub(linked, answer.text)


def _label(source: Source) -> str:
    if source.link:
        return f"[{source.title}]({source.link})"
    return source.title + (f" ({source.uri})" if source.uri != source.title else "")


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def answer_card(answer: Answer, note: str = "") -> Card:
    body = [_text(_linked_text(answer) or " ")]
    if answer.sources:
        body.append(_text("Sources", weight="Bolder", size="Small", spacing="Medium"))
        for s in answer.sources:
            body.append(_text(f"[{s.number}] {_label(s)}", size="Small", isSubtle=True, spacing="None"))
    notes = []
    if answer.doubtful:
        plural = "s are" if answer.doubtful > 1 else " is"
        notes.append(f"⚠️ {answer.doubtful} sentence{plural} not supported by the sources cited.")
    for source in dict.fromkeys(answer.supported_instead_by):
        notes.append(f"📌 A sentence cites the wrong source; [{source.number}] {_label(source)} supports it.")
    if answer.scope == "channel":
        notes.append(CHANNEL_SCOPE_NOTE)
    if note:
        notes.append(f"🔒 {note}")
    body.extend(_text(n, size="Small", isSubtle=True) for n in notes)
    card: Card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
    }
    if answer.interaction_id:
        card["actions"] = [
            {
                "type": "Action.Submit",
                "title": title,
                "data": {FEEDBACK_KEY: rating, "interaction_id": answer.interaction_id},
            }
            for rating, title in FEEDBACK_ACTIONS.items()
        ]
    return card
