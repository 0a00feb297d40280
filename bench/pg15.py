"""The PostgreSQL 15 manual (Debian's postgresql-doc-15) as a benchmark corpus, and its question set.

``bench/data/pg15_questions.jsonl`` holds natural-language questions with the pages that answer them
(checked by ``bench/data/check_pg15_questions.py``). Pages are scored by file name: a passage is a hit when
the page it came from answers the question.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "corpora" / "pg15"
HTML_DIR = CACHE / "usr" / "share" / "doc" / "postgresql-doc-15" / "html"
QUESTIONS = REPO / "bench" / "data" / "pg15_questions.jsonl"
TENANT = "acme"


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    relevant: frozenset[str]


def ensure_corpus() -> Path:
    """Downloads and unpacks the Debian package once (apt-get download needs no root)."""
    if not HTML_DIR.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["apt-get", "download", "postgresql-doc-15"], cwd=tmp, check=True)
            [deb] = Path(tmp).glob("postgresql-doc-15_*.deb")
            CACHE.mkdir(parents=True, exist_ok=True)
            subprocess.run(["dpkg", "-x", str(deb), str(CACHE)], check=True)
    return HTML_DIR


def pages(limit: int = 0) -> list[Path]:
    """The manual's HTML pages in name order; ``limit`` keeps every answering page plus the first others."""
    every = sorted(ensure_corpus().glob("*.html"))
    if not limit or limit >= len(every):
        return every
    needed = {name for q in questions() for name in q.relevant}
    chosen = [p for p in every if p.name in needed]
    chosen += [p for p in every if p.name not in needed][: max(0, limit - len(chosen))]
    return sorted(chosen)


def questions() -> list[Question]:
    out = []
    for line in QUESTIONS.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            out.append(Question(row["id"], row["question"], frozenset(row["relevant"])))
    return out


def page_of(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def hit_and_reciprocal_rank(ranked_pages: list[str], relevant: frozenset[str], k: int = 5) -> tuple[int, float]:
    """Whether a relevant page is in the first ``k``, and 1/rank of the first relevant one (0 if none)."""
    for rank, page in enumerate(ranked_pages, start=1):
        if page in relevant:
            return int(rank <= k), 1.0 / rank
    return 0, 0.0
