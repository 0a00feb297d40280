"""Finding the [n] citations in an answer and telling real ones from invented ones."""

from __future__ import annotations

import re

_CITATION = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(answer: str) -> list[int]:
    """Source numbers in order of first citation, duplicates removed."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        for part in match.group(1).split(","):
            number = int(part)
            if number not in seen:
                seen.append(number)
    return seen


def valid_citations(answer: str, source_count: int) -> list[int]:
    return [n for n in cited_numbers(answer) if 1 <= n <= source_count]
