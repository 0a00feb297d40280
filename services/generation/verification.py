"""Sentence-level citation check: does the source a sentence cites actually say what the sentence says?

For a sentence s citing passages P (markers removed from s before scoring):

    support(s) = max over p in P of
        number_match(s, p) * (W_COSINE * cosine(s, p) + W_LEXICAL * lexical(s, p))

- cosine(s, p): cosine similarity between the embedding of s and that of p's best-matching sentence; a
  passage is several sentences, and a whole-passage embedding dilutes the one that carries the claim.
- lexical(s, p): the share of s's content words (stop words dropped, crudely stemmed) that occur
  anywhere in p. Embeddings see "25 days" and "30 days" as near neighbours; words pin the claim down.
- number_match(s, p): the share of the numbers in s that occur in p, 1 when s has none. A wrong figure
  is the costliest kind of unsupported sentence, and both other terms barely move for one token.

A sentence that says the opposite of its source keeps most of the source's words, so the sum above calls
it supported ("Unused days are paid out" against "they are not paid out"). Such a pair scores
CONTRADICTION_FACTOR of it. The test is on words: a word the sentence shares with the passage
contradicts when, at every place the passage uses it, both its own negation (is it the first content word
after not, no, never, cannot ...) and its clause's (an odd number of negations) are the opposite of the
sentence's. Requiring both lets a negation move within a clause: "you may not work from sanctioned
countries" agrees with "working from sanctioned countries is never allowed". A word of opposite meaning
counts as its counterpart negated: one from a short list of the words policies turn on ("optional" for
"not required", "rejected" for "not accepted", "forbidden" or "prohibited" for "not allowed", with
"permitted" read as "allowed"), and one made with "un" or "non-" from a word the other text uses ("unpaid"
against "paid"). Other wordings ("excluded from reimbursement" for "not reimbursed") are not seen.

A cited sentence is "supported" when support >= SUPPORT_THRESHOLD, else "unsupported". A sentence with no
marker is "uncited" (support 0); one citing a number outside the sources is "invalid", scored on the
numbers that are valid.

A sentence that is not supported is then scored against the other passages the model was given: those
reaching the threshold are its ``supported_by``, best first. A small model often cites the wrong passage
of the right document, and a reviewer should tell that apart from a claim no source makes.

The weights and threshold were picked on the labelled dev set in tests/integration/test_verification.py
(36 sentence/passage pairs from sample/corpus, 15 unsupported), with all-MiniLM-L6-v2: "unsupported" has
precision 15/16 and recall 15/15 there. The margin is thin (the closest pair scores 0.667 unsupported
against 0.690 supported), so treat the verdict as a flag for review, not proof. The negation test was
chosen on the contradictions and faithful negations in the same file.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from copilot.common.v1 import common_pb2
from copilot.embedding import Embedder
from services.generation.citations import cited_numbers

Verdict = Literal["supported", "unsupported", "uncited", "invalid"]

W_COSINE = 0.3
W_LEXICAL = 0.7
SUPPORT_THRESHOLD = 0.68
#: What a contradicted sentence keeps of its score: below the threshold however many words it shares.
CONTRADICTION_FACTOR = 0.5

_MARKERS = r"\[\d+(?:\s*,\s*\d+)*\]"
_MARKER = re.compile(_MARKERS)
# A sentence ends at . ! or ? followed by whitespace or the end; markers right after it stay with it.
# "2.08" and "v4.2" do not end a sentence because no whitespace follows the full stop.
_SENTENCE_END = re.compile(rf"[.!?]+(?:\s*{_MARKERS})*(?=\s|$)")
_WORD = re.compile(r"[a-z0-9]+(?:[.,:][0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_STOP_WORD_LIST = """
a about after all also an and any are as at be been before being but by can could did do does each for from
had has have he her his how if in into is it its may might more most must no not of on once only or other our
out over per she should so some such than that the their them then there these they this those to under
until up was we were what when where which while who why will with within would you your
"""
_STOP_WORDS = frozenset(_STOP_WORD_LIST.split())
# "without" is left out: "never use public Wi-Fi without the VPN" does not deny the VPN.
_NEGATION_LIST = """
not no never cannot nor neither none nothing nobody can't couldn't don't doesn't didn't isn't aren't
wasn't weren't won't wouldn't shouldn't mustn't hasn't haven't hadn't
"""
_NEGATIONS = frozenset(_NEGATION_LIST.split())
# "negative or synonym: word it stands for". A negative is read as its word negated, a synonym as the word.
_COUNTERPART_LIST = """
forbid:allow forbidden:allow forbids:allow prohibit:allow prohibited:allow prohibits:allow disallow:allow
disallowed:allow banned:allow reject:accept rejected:accept rejects:accept refused:accept declined:accept
optional:required exclude:include excluded:include excludes:include disabled:enabled disable:enabled
denied:approve deny:approve denies:approve invalid:valid ineligible:eligible inactive:active
incorrect:correct incomplete:complete illegal:legal impossible:possible
"""
_SYNONYM_LIST = """
permit:allow permits:allow permitted:allow permissible:allow mandatory:required compulsory:required
obligatory:required
"""


def _counterparts(listing: str) -> dict[str, str]:
    # Keyed and valued by stems, as words are compared: "rejected" and "rejects" both stem to "reject".
    pairs = (pair.split(":") for pair in listing.split())
    return {_stem(word): _stem(counterpart) for word, counterpart in pairs}


# Shorter "un" words ("until", "unit", "union") are left alone by length; "unless" is not "less" negated.
_NOT_UN_PREFIXED = frozenset({"unless"})
_CLAUSE_BREAKS = frozenset([",", ";", ":", ".", "!", "?", "and", "or", "but", "while", "whereas", "although"])
_NON_HYPHEN = re.compile(r"\bnon-(?=[a-z])")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[,;:.!?]")


@dataclass(frozen=True)
class SentenceCheck:
    text: str
    cited: list[int]
    support: float
    verdict: Verdict
    # Numbers of other given passages that support a sentence its own citations do not, best first.
    supported_by: list[int] = field(default_factory=list)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` with their [n] markers; lines (list items, paragraphs) never share one."""
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for end in _SENTENCE_END.finditer(line):
            sentences.append(line[start : end.end()].strip())
            start = end.end()
        sentences.append(line[start:].strip())
    return [s for s in sentences if _WORD.search(s.lower())]


def strip_markers(sentence: str) -> str:
    without = _MARKER.sub("", sentence)
    # "zone C [1]." loses its marker as "zone C ."; close the gap the marker leaves.
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s+", " ", without)).strip()


def content_words(text: str) -> set[str]:
    words = set()
    for word in _WORD.findall(text.lower()):
        if word in _STOP_WORDS:
            continue
        words.add(_stem(word))
    return words


def _stem(word: str) -> str:
    # Crude on purpose: "governed" and "governing", "accrues" and "accrue" must meet; nothing else matters.
    if word.isalpha() and not word.endswith("ss"):
        for suffix in ("ing", "ed", "es", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
        if word.endswith("e") and len(word) > 3:
            word = word[:-1]
    return word


_NEGATIVES = _counterparts(_COUNTERPART_LIST)
_SYNONYMS = _counterparts(_SYNONYM_LIST)


def lexical_overlap(sentence: str, passage: str) -> float:
    words = content_words(sentence)
    return len(words & _passage_words(passage)) / len(words) if words else 0.0


# Each passage is scored against every sentence of the answer (and doubtful ones against every passage):
# it is read once. Cached on the text, as the monitor does for its passages.
@functools.lru_cache(maxsize=1024)
def _passage_words(text: str) -> frozenset[str]:
    return frozenset(content_words(text))


@dataclass(frozen=True)
class _Use:
    negated: bool  # the first content word after a negation in its clause
    in_negated_clause: bool  # its clause holds an odd number of negations


def _word_uses(text: str) -> Mapping[str, tuple[_Use, ...]]:
    """Each content word of ``text`` (stemmed) with how every use of it stands to negation."""
    clauses: list[list[str]] = [[]]
    # "non-refundable" is one word, "refundable" denied: as "nonrefundable" it is read like an "un" word.
    for token in _TOKEN.findall(_NON_HYPHEN.sub("non", text.lower().replace("\u2019", "'"))):
        if token in _CLAUSE_BREAKS:
            clauses.append([])
        else:
            clauses[-1].append(token)
    uses: dict[str, list[_Use]] = {}
    for clause in clauses:
        odd = sum(token in _NEGATIONS for token in clause) % 2 == 1
        after_negation = False
        for token in clause:
            if token in _NEGATIONS:
                after_negation = True
            elif token not in _STOP_WORDS:
                word = _stem(token)
                if word in _NEGATIVES:
                    uses.setdefault(_NEGATIVES[word], []).append(_Use(not after_negation, not odd))
                else:
                    uses.setdefault(_SYNONYMS.get(word, word), []).append(_Use(after_negation, odd))
                after_negation = False
    return {word: tuple(each) for word, each in uses.items()}


def _un_prefixed_root(word: str) -> str | None:
    for prefix in ("un", "non"):
        if word.startswith(prefix) and len(word) - len(prefix) >= 4 and word not in _NOT_UN_PREFIXED:
            return word[len(prefix) :]
    return None


def _with_un_words_as_negations(
    uses: Mapping[str, tuple[_Use, ...]], other: Mapping[str, object]
) -> Mapping[str, tuple[_Use, ...]]:
    """``uses`` with each "un" word whose root ``other`` uses, and which ``other`` does not use itself, read
    as its root negated: "unpaid" against a source saying "paid". Only then, as "until" and "unit" are
    words of their own."""
    aligned: dict[str, list[_Use]] = {}
    for word, each in uses.items():
        root = _un_prefixed_root(word)
        if root and word not in other and root in other:
            aligned.setdefault(root, []).extend(_Use(not u.negated, not u.in_negated_clause) for u in each)
        else:
            aligned.setdefault(word, []).extend(each)
    return {word: tuple(each) for word, each in aligned.items()}


_passage_uses = functools.lru_cache(maxsize=1024)(_word_uses)


def contradicts(sentence: str, passage: str) -> bool:
    """Whether ``sentence`` negates a word ``passage`` asserts, or the reverse (see the module docstring)."""
    said, source = _word_uses(sentence), _passage_uses(passage)
    said, source = _with_un_words_as_negations(said, source), _with_un_words_as_negations(source, said)
    for word, (use, *_) in said.items():
        there = source.get(word, ())
        if there and all(
            u.negated != use.negated and u.in_negated_clause != use.in_negated_clause for u in there
        ):
            return True
    return False


def number_match(sentence: str, passage: str) -> float:
    numbers = set(_NUMBER.findall(sentence))
    return len(numbers & set(_NUMBER.findall(passage))) / len(numbers) if numbers else 1.0


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    # The embedder returns unit vectors, so the dot product is the cosine.
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


class CitationVerifier:
    def __init__(self, embedder: Embedder, threshold: float = SUPPORT_THRESHOLD) -> None:
        self._embedder = embedder
        self._threshold = threshold

    def verify(self, answer: str, passages: Sequence[common_pb2.Passage]) -> list[SentenceCheck]:
        sentences = split_sentences(answer)
        claims = [strip_markers(s) for s in sentences]
        cited = [cited_numbers(s) for s in sentences]
        given = range(1, len(passages) + 1)
        vectors = _Vectors(self._embedder, claims, passages)
        vectors.embed(
            [i for i, numbers in enumerate(cited) if numbers], {n for c in cited for n in c if n in given}
        )
        checks = [self._judge(i, sentence, cited[i], vectors, given) for i, sentence in enumerate(sentences)]

        # A sentence in doubt is scored against the passages it does not cite. Only then are those embedded,
        # so a well-cited answer costs no more.
        doubtful = [i for i, c in enumerate(checks) if c.verdict != "supported" and content_words(claims[i])]
        if doubtful:
            vectors.embed(doubtful, set(given))
        for i in doubtful:
            scores = {n: vectors.support(i, n) for n in given if n not in cited[i]}
            supporters = [n for n, score in scores.items() if score >= self._threshold]
            checks[i] = replace(checks[i], supported_by=sorted(supporters, key=lambda n: -scores[n]))
        return checks

    def _judge(
        self, i: int, sentence: str, numbers: list[int], vectors: _Vectors, given: range
    ) -> SentenceCheck:
        if not numbers:
            return SentenceCheck(sentence, [], 0.0, "uncited")
        valid = [n for n in numbers if n in given]
        support = max((vectors.support(i, n) for n in valid), default=0.0)
        verdict: Verdict
        if len(valid) < len(numbers):
            verdict = "invalid"
        elif support >= self._threshold:
            verdict = "supported"
        else:
            verdict = "unsupported"
        return SentenceCheck(sentence, numbers, support, verdict)


class _Vectors:
    """The embeddings of an answer's claims and of its passages' sentences, each made once, when needed."""

    def __init__(
        self, embedder: Embedder, claims: Sequence[str], passages: Sequence[common_pb2.Passage]
    ) -> None:
        self._embedder = embedder
        self._claims = claims
        self._passages = passages
        self._claim_vectors: dict[int, list[float]] = {}
        self._sentence_vectors: dict[int, list[list[float]]] = {}

    def embed(self, claims: Iterable[int], passages: Iterable[int]) -> None:
        """Embeds, in one call, the claims (by index) and passages (by number) not embedded yet."""
        new_claims = [i for i in claims if i not in self._claim_vectors]
        new_passages = sorted(n for n in set(passages) if n not in self._sentence_vectors)
        groups = [_sentences_of(self._passages[n - 1]) for n in new_passages]
        texts = [self._claims[i] for i in new_claims] + [s for group in groups for s in group]
        vectors = iter(self._embedder.embed(texts)) if texts else iter(())
        for i in new_claims:
            self._claim_vectors[i] = next(vectors)
        for n, group in zip(new_passages, groups, strict=True):
            self._sentence_vectors[n] = [next(vectors) for _ in group]

    def support(self, claim: int, passage: int) -> float:
        """support(s, p) of the module docstring, for claim index ``claim`` and passage number ``passage``."""
        text, passage_text = self._claims[claim], self._passages[passage - 1].text
        cosine = max(_cosine(self._claim_vectors[claim], v) for v in self._sentence_vectors[passage])
        blended = W_COSINE * cosine + W_LEXICAL * lexical_overlap(text, passage_text)
        score = number_match(text, passage_text) * blended
        return score * CONTRADICTION_FACTOR if contradicts(text, passage_text) else score


def _sentences_of(passage: common_pb2.Passage) -> list[str]:
    return split_sentences(passage.text) or [passage.text]
