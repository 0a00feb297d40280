"""Detectors that inspect one answered interaction and report what a human should review."""

from __future__ import annotations

import base64
import bisect
import enum
import json
import logging
import re
import statistics
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from copilot.events.v1 import events_pb2

log = logging.getLogger(__name__)


class Severity(enum.IntEnum):
    """How urgent a finding is; same numbers as copilot.monitor.v1.Severity so converting is a cast."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


@dataclass(frozen=True)
class Finding:
    """One thing a detector found in one interaction."""

    detector: str
    severity: Severity
    reason: str
    evidence: tuple[str, ...]


class Detector(Protocol):
    name: str

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]: ...


def run_detectors(detectors: Iterable[Detector], event: events_pb2.InteractionEvent) -> list[Finding]:
    """Runs every detector; a failing one becomes a finding, so one bug neither hides the others' findings
    nor goes unnoticed."""
    findings: list[Finding] = []
    for detector in detectors:
        try:
            findings.extend(detector.inspect(event))
        except Exception as exc:
            log.exception("detector %s failed on event %s", detector.name, event.event_id)
            findings.append(
                Finding(
                    detector=detector.name,
                    severity=Severity.LOW,
                    reason=f"detector failed: {type(exc).__name__}: {exc}",
                    evidence=(),
                )
            )
    return findings


def default_detectors(latency_ceiling_ms: float = 60_000.0) -> list[Detector]:
    return [
        PiiDetector(),
        SecretDetector(),
        PromptInjectionDetector(),
        UngroundedDetector(),
        RefusalDetector(),
        LatencyDetector(latency_ceiling_ms),
        AccessDetector(),
    ]


# --- shared pattern scanning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    reason: str
    severity: Severity
    pattern: re.Pattern[str]
    # Returns the evidence to store for a match, or None when the match fails its validation.
    evidence: Callable[[re.Match[str]], str | None]


def _scan(detector: str, text: str, rules: Sequence[_Rule]) -> list[Finding]:
    """One finding per reason; rules earlier in the list claim their spans first, so a number already
    reported as an IBAN is not reported again as a card or a phone."""
    # Claimed spans never overlap, so sorted starts and ends let bisect find the only two neighbours to check.
    starts: list[int] = []
    ends: list[int] = []
    by_reason: dict[str, tuple[Severity, list[str]]] = {}
    for rule in rules:
        for match in rule.pattern.finditer(text):
            start, end = match.span()
            at = bisect.bisect_right(starts, start)
            if (at > 0 and ends[at - 1] > start) or (at < len(starts) and starts[at] < end):
                continue
            shown = rule.evidence(match)
            if shown is None:
                continue
            starts.insert(at, start)
            ends.insert(at, end)
            by_reason.setdefault(rule.reason, (rule.severity, []))[1].append(shown)
    return [
        Finding(detector=detector, severity=severity, reason=reason, evidence=tuple(dict.fromkeys(shown)))
        for reason, (severity, shown) in by_reason.items()
    ]


def _mask(value: str, keep_head: int = 0, keep_tail: int = 4) -> str:
    """Stars out letters and digits between head and tail, keeping separators so the shape stays readable."""
    positions = [i for i, char in enumerate(value) if char.isalnum()]
    hidden = set(positions[keep_head : len(positions) - keep_tail])
    return "".join("*" if i in hidden else char for i, char in enumerate(value))


def _redact(value: str, keep_head: int = 0) -> str:
    """Keeps a non-secret type prefix and, for long values, the last 4 characters to tell which key leaked."""
    if len(value) < keep_head + 12:
        return value[:keep_head] + "****"
    return f"{value[:keep_head]}****{value[-4:]}"


# --- pii ---------------------------------------------------------------------------------------------------

# ":" and "/" may not precede the local part, so the password of a connection string, left to the secret
# detector, does not also read as an email address.
_EMAIL = re.compile(
    r"(?<![\w.+%/:-])[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})(?![\w-])"
)
# RFC 2606 names are reserved for documentation, so they never belong to a real person.
_EXAMPLE_DOMAIN = re.compile(r"(?:^|\.)(?:example\.(?:com|net|org)|example|test|invalid|localhost)$", re.I)

# International numbers need their "+" and US numbers their separators: bare digit runs are far more often
# amounts, ids or years than phone numbers. Commas are never separators, so "412,000" is an amount.
_PHONE_INTERNATIONAL = re.compile(
    r"(?<![\w+])\+[1-9](?:\d{7,14}|\d{0,3}(?:[ .-]\d{1,6}|[ .-]?\(\d{1,4}\)(?:[ .-]?\d{1,6})?){1,6})"
    r"(?![\w-]|[.,]\d)"
)
# NANP area codes and exchanges never start with 0 or 1.
_PHONE_US = re.compile(
    r"(?<![\w+-])(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])([2-9]\d{2})[ .-](\d{4})"
    r"(?![\w-]|[.,]\d)"
)
_CARD_COMPACT = re.compile(r"(?<![\w.,-])\d{13,19}(?![\w-]|[.,]\d)")
# 4-4-4-4 (up to 19 digits) for most networks, 4-6-5 and 4-6-4 for Amex and Diners; the look-arounds stop a
# window of a longer digit sequence from matching.
_CARD_GROUPED = re.compile(
    r"(?<![\w.,-])(?<!\d[ -])\d{4}([ -])(?:\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{6}\1\d{4,5})"
    r"(?![\w-]|[.,]\d|[ -]\d)"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
# Numbers the SSA voided after they were printed in advertising.
_VOIDED_SSNS = frozenset({"078051120", "219099999"})


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_evidence(match: re.Match[str]) -> str | None:
    digits = re.sub(r"\D", "", match.group())
    # Card network issuer numbers start with 2 to 6, which drops most Luhn-valid accidents such as ids.
    if len(digits) < 13 or digits[0] not in "23456" or not _luhn_ok(digits):
        return None
    return _mask(match.group())


def _iban_evidence(match: re.Match[str]) -> str | None:
    compact = match.group().replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return None
    rearranged = compact[4:] + compact[:4]
    if int("".join(str(int(char, 36)) for char in rearranged)) % 97 != 1:
        return None
    return _mask(match.group(), keep_head=2)


def _ssn_evidence(match: re.Match[str]) -> str | None:
    area, _, group, serial = match.groups()
    # Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
    if area in ("000", "666") or area.startswith("9") or group == "00" or serial == "0000":
        return None
    if area + group + serial in _VOIDED_SSNS:
        return None
    return _mask(match.group())


def _intl_phone_evidence(match: re.Match[str]) -> str | None:
    # E.164 caps a number at 15 digits; fewer than 8 is more likely a signed amount such as "+12 000".
    digit_count = sum(char.isdigit() for char in match.group())
    return match.group() if 8 <= digit_count <= 15 else None


def _us_phone_evidence(match: re.Match[str]) -> str | None:
    exchange, line = match.groups()
    # 555-0100 to 555-0199 is reserved for fiction and documentation.
    if exchange == "555" and line.startswith("01"):
        return None
    return match.group()


def _email_evidence(match: re.Match[str]) -> str | None:
    return None if _EXAMPLE_DOMAIN.search(match.group(1)) else match.group()


_PII_RULES = (
    _Rule("answer contains an IBAN", Severity.HIGH, _IBAN, _iban_evidence),
    _Rule("answer contains a payment card number", Severity.HIGH, _CARD_GROUPED, _card_evidence),
    _Rule("answer contains a payment card number", Severity.HIGH, _CARD_COMPACT, _card_evidence),
    _Rule("answer contains a US social security number", Severity.HIGH, _SSN, _ssn_evidence),
    _Rule("answer contains a phone number", Severity.MEDIUM, _PHONE_INTERNATIONAL, _intl_phone_evidence),
    _Rule("answer contains a phone number", Severity.MEDIUM, _PHONE_US, _us_phone_evidence),
    _Rule("answer contains an email address", Severity.MEDIUM, _EMAIL, _email_evidence),
)


class PiiDetector:
    """Personal data in an answer: the model may have copied it from a source into a reply that travels
    further than the source does."""

    name = "pii"

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        return _scan(self.name, event.answer, _PII_RULES)


# --- secret ------------------------------------------------------------------------------------------------

_AWS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_JWT = re.compile(r"(?<![\w-])(eyJ[A-Za-z0-9_-]+)\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?![\w-])")
_GITHUB_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])"
)
# Real Slack tokens start with a numeric team or user id; docs write "xoxb-your-token".
_SLACK_TOKEN = re.compile(r"(?<![A-Za-z0-9-])xox[baprs]-\d+-[A-Za-z0-9-]{10,}")
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,30})://([^\s:/@]+):([^\s/@]+)@([^\s/?#@]+)")
_API_KEY = re.compile(r"\bapi[_-]?key[\"']?\s*[:=]\s*[\"']?([^\s\"'`,;]{16,})", re.I)
# Documentation writes credentials as placeholders; flagging those would bury the real leaks.
_PLACEHOLDER = re.compile(
    r"[*xX.]+|<[^>]*>|\[[^\]]*\]|\$\{[^}]*\}|\{\{[^}]*\}\}|\$?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|%s"
    r"|(?i:pass(?:word|wd)?|pwd|secret|changeme|(?:your|my)[\w-]*|[\w-]*here)"
)


def _jwt_evidence(match: re.Match[str]) -> str | None:
    # Anything can start with "eyJ"; a JWT header is base64url JSON naming its algorithm.
    header = match.group(1)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        return None
    return _redact(match.group(), keep_head=3) if isinstance(decoded, dict) and "alg" in decoded else None


def _url_credentials_evidence(match: re.Match[str]) -> str | None:
    scheme, user, password, host = match.groups()
    if _PLACEHOLDER.fullmatch(password):
        return None
    return f"{scheme}://{user}:****@{host}"


def _api_key_evidence(match: re.Match[str]) -> str | None:
    value = match.group(1)
    if _PLACEHOLDER.fullmatch(value):
        return None
    return match.group()[: match.start(1) - match.start()] + _redact(value)


def _typed_token_evidence(keep_head: int) -> Callable[[re.Match[str]], str | None]:
    return lambda match: _redact(match.group(), keep_head)


_SECRET_RULES = (
    _Rule("answer contains a private key", Severity.HIGH, _PRIVATE_KEY, lambda match: match.group()),
    _Rule("answer contains an AWS access key id", Severity.HIGH, _AWS_KEY_ID, _typed_token_evidence(4)),
    _Rule("answer contains a GitHub token", Severity.HIGH, _GITHUB_TOKEN, _typed_token_evidence(4)),
    _Rule("answer contains a Slack token", Severity.HIGH, _SLACK_TOKEN, _typed_token_evidence(5)),
    _Rule("answer contains a JSON web token", Severity.HIGH, _JWT, _jwt_evidence),
    _Rule("answer contains a password in a URL", Severity.HIGH, _URL_CREDENTIALS, _url_credentials_evidence),
    _Rule("answer contains an API key", Severity.HIGH, _API_KEY, _api_key_evidence),
)


class SecretDetector:
    """Credentials in an answer: whoever reads it can use them, so each one needs rotating at once."""

    name = "secret"

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        return _scan(self.name, event.answer, _SECRET_RULES)


# --- prompt_injection --------------------------------------------------------------------------------------

_FILLER = r"(?:(?:all|any|the|of|your|these|those|my)\s+){0,3}"
_EARLIER = r"(?:previous|prior|above|earlier|preceding|foregoing)"
_RULES_NOUN = r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|guardrails)"
# Bare "you are now", "developer mode" and "jailbreak" are everyday words in IT how-tos ("you are now signed
# in", "enable developer mode", "jailbroken phones may not enrol"), so each phrase needs its attack context.
# DAN is matched in capitals only: "act as Dan's backup" is not an attack.
_INJECTION = re.compile(
    "|".join(
        (
            rf"\b(?:ignore|forget|override)\s+{_FILLER}{_EARLIER}\s+{_RULES_NOUN}",
            rf"\bdisregard\s+{_FILLER}(?:(?:{_EARLIER}|system|safety)\s+)?{_RULES_NOUN}",
            r"\byou\s+are\s+now\s+(?:(?-i:DAN)\b|in\s+(?:developer|god|jailbreak|unrestricted|(?-i:DAN))\s+mode"
            r"|(?:jailbroken|unrestricted|unfiltered|uncensored)\b"
            rf"|no\s+longer\s+(?:bound|restricted|limited)\s+by\s+{_FILLER}(?:restrictions|policies|{_RULES_NOUN})"
            r"|an?\s+(?:\w+\s+){0,2}(?:AI|assistant|chatbot|language\s+model|bot)\b)",
            r"\bact\s+as\s+(?:(?-i:DAN)\b|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken)\b)",
            r"\b(?:reveal|show|print|repeat|output|leak|display|dump)\s+(?:me\s+)?(?:your|the)\s+"
            r"(?:(?:full|entire|original|hidden|initial|secret)\s+)?"
            r"(?:system\s+prompt|(?:system|initial|hidden)\s+instructions)",
            r"\b(?:act\s+as|pretend\s+to\s+be|simulate)\s+(?:\w+\s+){0,3}(?:in|with)\s+developer\s+mode",
            r"\bdeveloper\s+mode\s+(?:output|response)s?\b",
            r"\bjailbreak\s+(?:mode|prompt)\b",
            r"\bjailbr(?:eak|oken)\s+(?:(?:the|this|your)\s+)?(?:AI|assistant|chatbot|model|copilot|LLM|GPT)\b",
            r"\bdo\s+anything\s+now\b",
        )
    ),
    re.I,
)


def _normalize(text: str) -> str:
    # NFKC folds full-width and other look-alike letters; dropping format characters (zero-width spaces,
    # soft hyphens, bidi marks) stops them from splitting a phrase invisibly.
    folded = unicodedata.normalize("NFKC", text)
    return "".join(char for char in folded if unicodedata.category(char) != "Cf")


def _injection_phrases(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(" ".join(m.group().split()) for m in _INJECTION.finditer(_normalize(text))))


class PromptInjectionDetector:
    """Instructions aimed at the model. In a retrieved passage it is indirect injection: someone planted it in
    a document, so it is worse than a user trying their luck in the question."""

    name = "prompt_injection"

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        findings: list[Finding] = []
        question_phrases = _injection_phrases(event.question)
        if question_phrases:
            findings.append(self._finding(Severity.MEDIUM, "question", question_phrases))
        for number, passage in enumerate(event.passages, start=1):
            phrases = _injection_phrases(passage.text)
            if phrases:
                where = f"passage {passage.chunk_id or number}"
                findings.append(self._finding(Severity.HIGH, where, phrases))
        return findings

    def _finding(self, severity: Severity, where: str, phrases: tuple[str, ...]) -> Finding:
        return Finding(
            detector=self.name,
            severity=severity,
            reason=f"possible prompt injection in the {where}",
            evidence=tuple(f"{where}: {phrase}" for phrase in phrases),
        )


# --- ungrounded --------------------------------------------------------------------------------------------

_CITATION = re.compile(r"\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_LEADING_CITATIONS = re.compile(r"(?:\s*\[\d{1,4}(?:\s*,\s*\d{1,4})*\])+")
_WORD = re.compile(r"\w+")
# Only words longer than two letters: shorter ones are dropped before the list is consulted.
# fmt: off
_STOP_WORDS = frozenset({
    "about", "above", "after", "again", "against", "all", "also", "and", "any", "are", "because", "been",
    "before", "being", "below", "between", "both", "but", "can", "could", "did", "does", "doing", "down",
    "during", "each", "either", "else", "etc", "few", "for", "from", "further", "had", "has", "have",
    "having", "her", "here", "hers", "herself", "him", "himself", "his", "how", "however", "into", "its",
    "itself", "just", "may", "might", "more", "most", "must", "myself", "nor", "not", "now", "off", "once",
    "only", "other", "our", "ours", "ourselves", "out", "over", "own", "per", "same", "shall", "she",
    "should", "since", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves",
    "then", "there", "these", "they", "this", "those", "through", "thus", "too", "under", "until", "upon",
    "very", "via", "was", "were", "what", "when", "where", "whether", "which", "while", "who", "whom",
    "whose", "why", "will", "with", "within", "without", "would", "yes", "yet", "you", "your", "yours",
    "yourself", "yourselves",
})
# fmt: on


def _sentences(text: str) -> list[str]:
    """Splits on sentence ends and line breaks; citations written after the full stop ("... grew. [2]")
    belong to the sentence before them."""
    sentences: list[str] = []
    for piece in _SENTENCE_BREAK.split(text):
        leading = _LEADING_CITATIONS.match(piece)
        if leading and sentences:
            sentences[-1] = f"{sentences[-1]} {leading.group().strip()}"
            piece = piece[leading.end() :]
        if piece.strip():
            sentences.append(piece.strip())
    return sentences


def _cited_numbers(text: str) -> list[int]:
    return [int(number) for match in _CITATION.finditer(text) for number in match.group(1).split(",")]


def _content_words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if len(word) > 2 and word not in _STOP_WORDS}


class UngroundedDetector:
    """Answers that do not rest on their sources: no citation, a citation to a source the model never saw
    (invented), or a cited sentence whose words barely appear in the cited passages (a cheap lexical proxy
    for an unsupported claim)."""

    name = "ungrounded"

    def __init__(self, min_support: float = 0.3) -> None:
        self.min_support = min_support

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        answer = event.answer
        if event.refused or not answer.strip():
            return []
        sentences = _sentences(answer)
        cited = _cited_numbers(answer)
        if not cited:
            return [Finding(self.name, Severity.MEDIUM, "answer cites no source", ())]

        given = len(event.passages)
        invalid = sorted({number for number in cited if not 1 <= number <= given})
        if invalid:
            return [
                Finding(
                    self.name,
                    Severity.HIGH,
                    f"cites source {number} which was not given",
                    tuple(s for s in sentences if number in _cited_numbers(s)),
                )
                for number in invalid
            ]

        if event.sentences:
            return self._from_generation_checks(event)
        passage_words = [_content_words(f"{p.title} {p.text}") for p in event.passages]
        findings: list[Finding] = []
        for sentence in sentences:
            numbers = set(_cited_numbers(sentence))
            words = _content_words(_CITATION.sub(" ", sentence))
            if not numbers or not words:
                continue
            support: set[str] = set().union(*(passage_words[number - 1] for number in numbers))
            if len(words & support) / len(words) < self.min_support:
                findings.append(
                    Finding(self.name, Severity.LOW, "sentence poorly supported by its citation", (sentence,))
                )
        return findings

    def _from_generation_checks(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        """Generation scored each sentence against its cited passages with embeddings and word overlap, a
        better judge than the lexical fallback above; the monitor turns its verdicts into flags."""
        unsupported = [
            f"{s.text} (support {s.support:.2f})"
            for s in event.sentences
            if s.verdict == events_pb2.SUPPORT_VERDICT_UNSUPPORTED
        ]
        if not unsupported:
            return []
        reason = f"{len(unsupported)} sentence(s) not supported by the sources they cite"
        return [Finding(self.name, Severity.MEDIUM, reason, tuple(unsupported))]


# --- refusal -----------------------------------------------------------------------------------------------


class RefusalDetector:
    """Refusals point at coverage gaps (questions no readable document answers); empty answers at failures."""

    name = "refusal"

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        if event.refused:
            reason = "no readable source covered the question"
            return [Finding(self.name, Severity.LOW, reason, (event.question,))]
        if not event.answer.strip():
            return [Finding(self.name, Severity.MEDIUM, "empty answer", (event.question,))]
        return []


# --- latency -----------------------------------------------------------------------------------------------


class LatencyDetector:
    """Slow answers, two ways: above an absolute ceiling (users give up long before a timeout fires), and
    outliers against the model's own recent answers, by median and MAD so that a few slow answers do not
    move the baseline the way a mean and standard deviation would."""

    name = "latency"
    window = 200
    min_samples = 30
    # 1.4826 * MAD estimates the standard deviation of a normal distribution; 5 of them is rare enough
    # that a flag means something changed.
    mad_scale = 1.4826
    outlier_sigmas = 5.0

    def __init__(self, ceiling_ms: float = 60_000.0) -> None:
        if ceiling_ms <= 0:
            raise ValueError(f"ceiling_ms must be positive, got {ceiling_ms}")
        self.ceiling_ms = ceiling_ms
        self._recent: dict[str, deque[float]] = {}

    def _outlier_limit(self, model: str) -> float | None:
        recent = self._recent.get(model)
        if recent is None or len(recent) < self.min_samples:
            return None
        median = statistics.median(recent)
        mad = statistics.median(abs(x - median) for x in recent)
        return median + self.outlier_sigmas * max(self.mad_scale * mad, 0.05 * median)

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        limit = self._outlier_limit(event.model)
        self._recent.setdefault(event.model, deque(maxlen=self.window)).append(event.total_ms)
        evidence = (
            f"model={event.model}",
            f"retrieval_ms={event.retrieval_ms:.0f}",
            f"first_token_ms={event.first_token_ms:.0f}",
            f"total_ms={event.total_ms:.0f}",
        )
        if event.total_ms > self.ceiling_ms:
            reason = f"answer took {event.total_ms:.0f} ms, above the {self.ceiling_ms:.0f} ms ceiling"
            return [Finding(self.name, Severity.LOW, reason, evidence)]
        if limit is not None and event.total_ms > limit:
            reason = f"answer took {event.total_ms:.0f} ms, far above its model's recent {limit:.0f} ms"
            return [Finding(self.name, Severity.LOW, reason, evidence)]
        return []


class AccessDetector:
    """Defence in depth: every passage the answer was built from must have been granted to the caller by
    'everyone', a user entry, or one of the groups the event says they hold. Retrieval filters inside the
    vector query, so a hit here means a bug or a tampered index, never a normal day."""

    name = "acl_anomaly"

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        held = {f"group:{g}" for g in event.groups}
        suspicious = [
            f"{p.chunk_id} ({p.title}): granted by {p.access_reason or 'nothing'}"
            for p in event.passages
            if not (
                p.access_reason == "everyone"
                or p.access_reason.startswith("user:")
                or p.access_reason in held
            )
        ]
        if not suspicious:
            return []
        reason = "answer used passages the caller's groups do not grant"
        return [Finding(self.name, Severity.HIGH, reason, tuple(suspicious))]
