"""BM25-style sparse vectors, computed locally: the lexical half of hybrid search.

A chunk's vector holds BM25's term-frequency part for each of its terms; a query's vector holds 1 for each
of its terms. The vector store multiplies in the inverse document frequency at query time (Qdrant's IDF
modifier), so the dot product of the two is the chunk's BM25 score and IDF stays right as the corpus
changes, with nothing to re-index. Terms are lower-cased, Snowball-stemmed words; identifiers such as
``max_connections`` count as themselves and as their parts, so "max connections" finds them too.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import Stemmer

#: BM25 saturation and length normalisation, the usual values.
K1 = 1.2
B = 0.75
#: Average chunk length in terms. BM25 wants the corpus average; a constant keeps every chunk's vector
#: independent of the others (ingest is incremental), and chunks are token-bounded so lengths vary little.
AVERAGE_TERMS = 90.0

_WORD = re.compile(r"[a-z0-9]+(?:[_'][a-z0-9]+)*")

# Function words carry no topic; dropping them keeps queries like "how do I ..." from matching everything.
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)


@dataclass(frozen=True)
class SparseVector:
    """Non-zero dimensions in ascending order and their weights."""

    indices: tuple[int, ...]
    values: tuple[float, ...]

    def __bool__(self) -> bool:
        return bool(self.indices)


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """The stemmed terms of ``text`` in order, stopwords dropped, identifiers also split into parts."""
    stem = _stemmer().stemWord
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS:
            continue
        if "_" in word:
            out.append(word)
            out.extend(stem(part) for part in word.split("_") if part and part not in STOPWORDS)
        else:
            out.append(stem(word.replace("'", "")))
    return out


def term_id(term: str) -> int:
    # Stable across processes and versions (unlike hash()); 31 bits keeps every store's index type happy.
    return zlib.crc32(term.encode()) & 0x7FFFFFFF


def _vector(weights: dict[int, float]) -> SparseVector:
    ordered = sorted(weights.items())
    return SparseVector(tuple(i for i, _ in ordered), tuple(w for _, w in ordered))


def encode_document(text: str) -> SparseVector:
    counts = Counter(term_id(t) for t in terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVERAGE_TERMS)
    return _vector({tid: tf * (K1 + 1) / (tf + norm) for tid, tf in counts.items()})


def encode_query(text: str) -> SparseVector:
    return _vector(dict.fromkeys((term_id(t) for t in terms(text)), 1.0))
