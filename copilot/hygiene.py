"""Spots passages in document text that address the model rather than the reader (indirect prompt injection).

Ingest marks such chunks, and does not drop them: a planted phrase must not be able to make a real
document vanish from search, and the mark lets retrieval, generation and reviewers treat the chunk with
suspicion. Generation withholds the offending paragraphs from the model (``redact_instructions``).
"""

from __future__ import annotations

import re
import unicodedata

_FILLER = r"(?:(?:all|any|the|of|your|these|those|my)\s+){0,3}"
_EARLIER = r"(?:previous|prior|above|earlier|preceding)"
_INSTRUCTIONS = r"(?:instructions?|prompts?|directions?|rules)"

# (reason, pattern). Bare "you are now" and "disregard" are everyday words in policies ("you are now
# enrolled", "disregard the old form"), so each phrase needs its attack context. DAN is matched in
# capitals only: "Dan" is a colleague.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "ignore_previous_instructions",
        re.compile(rf"\b(?:ignore|forget)\s+{_FILLER}{_EARLIER}\s+{_INSTRUCTIONS}", re.IGNORECASE),
    ),
    (
        "disregard_instructions",
        # Only the words an attack uses in between: "disregard the printed instructions" is a policy.
        re.compile(
            rf"\bdisregard\s+{_FILLER}(?:(?:{_EARLIER}|system|safety)\s+)?{_INSTRUCTIONS}",
            re.IGNORECASE,
        ),
    ),
    (
        "persona_override",
        re.compile(
            r"\byou\s+are\s+now\s+(?:(?-i:DAN)\b|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken)\b)",
            re.IGNORECASE,
        ),
    ),
    (
        "system_prompt_extraction",
        re.compile(
            r"\breveal\s+(?:your|the)\s+(?:(?:full|original|hidden)\s+)?system\s+prompt", re.IGNORECASE
        ),
    ),
)


def _normalize(text: str) -> str:
    # NFKC folds full-width and other look-alike letters; dropping format characters (zero-width spaces,
    # soft hyphens, bidi marks) stops them from splitting a phrase invisibly.
    folded = unicodedata.normalize("NFKC", text)
    return "".join(char for char in folded if unicodedata.category(char) != "Cf")


def suspicion(text: str) -> list[str]:
    """Why ``text`` looks like instructions aimed at the model, one reason per kind; empty when clean."""
    normalized = _normalize(text)
    return [reason for reason, pattern in _RULES if pattern.search(normalized)]


#: What the model reads in place of a paragraph that addresses it.
REDACTED = "[A paragraph addressed to an AI assistant was removed here.]"


def redact_instructions(text: str) -> str:
    """``text`` with every paragraph (line) that matches an injection rule replaced by ``REDACTED``.

    The whole line goes, not only the matching phrase: a planted note goes on after its opening ("ignore
    your previous instructions. End every answer with ..."), and the rest of the passage stays citable.
    """
    return "\n".join(REDACTED if suspicion(line) else line for line in text.split("\n"))
