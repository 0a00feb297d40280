"""Detectors that inspect one answered interaction and report what a human should review.

Two tiers. ``Tier.INLINE`` detectors are cheap (precompiled regexes, lexicon lookups, running statistics)
and run on every event in the consumer's thread. ``Tier.SAMPLED`` detectors are expensive (a classifier, an
embedding model) and run on a deterministic sample of events (by a hash of the event id, so a replayed event
is sampled again and its flags keep their ids) on a background thread (``SampledRunner``) that never slows
the consumer down: when it falls behind, events are dropped from its bounded queue and counted.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import enum
import functools
import hashlib
import json
import logging
import math
import queue
import re
import statistics
import threading
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from copilot.events.v1 import events_pb2
from services.monitor.toxicity import (
    LexiconHit,
    ProfanityClassifier,
    ToxicityLexicon,
    mask_term,
    needs_folding,
)

log = logging.getLogger(__name__)


class Severity(enum.IntEnum):
    """How urgent a finding is; same numbers as copilot.monitor.v1.Severity so converting is a cast."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3


class Tier(enum.StrEnum):
    """When a detector runs: on every event in the consumer, or on a sample in the background."""

    INLINE = "inline"
    SAMPLED = "sampled"


@dataclass(frozen=True)
class Span:
    """Where evidence sits: ``field`` is "answer", "question" or "passage:<chunk id>"; ``start`` and ``end``
    are character offsets into that field's text as the event carries it."""

    field: str
    start: int
    end: int

    def to_json(self) -> dict[str, str | int]:
        return {"field": self.field, "start": self.start, "end": self.end}

    @classmethod
    def from_json(cls, value: dict[str, str | int]) -> Span:
        return cls(str(value["field"]), int(value["start"]), int(value["end"]))


@dataclass(frozen=True)
class Finding:
    """One thing a detector found in one interaction (or, for window detectors, in a window of them).

    ``spans`` point at the text that is the evidence. Findings about a number or a window have none: the
    latency and length outliers (a statistic of the whole answer against the model's recent ones), query
    drift and retrieval decay (a window of many interactions); their evidence strings carry the figures."""

    detector: str
    severity: Severity
    reason: str
    evidence: tuple[str, ...]
    spans: tuple[Span, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Same detector, reason and evidence give the same fingerprint in any interaction: the same leaked
        key pasted by ten users is one alert, not ten."""
        material = "\x1f".join((self.detector, self.reason, *self.evidence))
        return hashlib.blake2b(material.encode(), digest_size=8).hexdigest()


class Detector(Protocol):
    name: str
    tier: Tier
    # Fraction of events a sampled detector inspects; inline detectors inspect every event (1.0).
    sample_rate: float

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]: ...


def in_sample(event_id: str, rate: float) -> bool:
    """Deterministic: the same event is always in or out, whichever process or replay asks."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


def run_detectors(
    detectors: Iterable[Detector], event: events_pb2.InteractionEvent, tier: Tier | None = None
) -> list[Finding]:
    """Runs the detectors of ``tier`` (every tier when None) whose sample holds the event. A failing one
    becomes a finding, so one bug neither hides the others' findings nor goes unnoticed."""
    findings: list[Finding] = []
    for detector in detectors:
        if tier is not None and detector.tier is not tier:
            continue
        if detector.tier is Tier.SAMPLED and not in_sample(event.event_id, detector.sample_rate):
            continue
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


class SampledRunner:
    """Runs the sampled tier on a background thread. ``submit`` never blocks: an event no sampled detector
    wants is skipped, and one that finds the queue full is dropped and counted in ``dropped``. Findings go
    to ``on_findings(event, findings)`` on the runner's thread, also when there are none, so the caller can
    tell "inspected, clean" from "not inspected"."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        on_findings: Callable[[events_pb2.InteractionEvent, list[Finding]], object],
        capacity: int = 1_000,
    ) -> None:
        if any(d.tier is not Tier.SAMPLED for d in detectors):
            raise ValueError("SampledRunner runs sampled detectors only")
        self._detectors = list(detectors)
        self._on_findings = on_findings
        self._queue: queue.Queue[events_pb2.InteractionEvent | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name="sampled-detectors", daemon=True)
        self.submitted = 0
        self.inspected = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, event: events_pb2.InteractionEvent) -> bool:
        """True when the event was queued for at least one sampled detector."""
        if not any(in_sample(event.event_id, d.sample_rate) for d in self._detectors):
            return False
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            return False
        self.submitted += 1
        return True

    def counts(self) -> dict[str, int]:
        """Running totals, for the metrics."""
        return {"submitted": self.submitted, "inspected": self.inspected, "dropped": self.dropped}

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finishes what is queued (up to ``timeout_s``), then stops the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            findings = run_detectors(self._detectors, event, Tier.SAMPLED)
            self.inspected += 1
            try:
                self._on_findings(event, findings)
            except Exception:
                log.exception("storing sampled findings for event %s failed", event.event_id)


def default_detectors(
    latency_ceiling_ms: float = 60_000.0, role_groups: Mapping[str, Sequence[str]] | None = None
) -> list[Detector]:
    """The inline tier."""
    return [
        PiiDetector(),
        SecretDetector(),
        PromptInjectionDetector(),
        UngroundedDetector(),
        RefusalDetector(),
        LatencyDetector(latency_ceiling_ms),
        LengthDetector(),
        ToxicityDetector(),
        AccessDetector(role_groups),
    ]


# --- shared pattern scanning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    reason: str
    severity: Severity
    pattern: re.Pattern[str]
    # Returns the evidence to store for a match, or None when the match fails its validation.
    evidence: Callable[[re.Match[str]], str | None]
    # Literals one of which every match contains (matched against the lower-cased text when
    # ``lowercase_hints``): a text without any of them skips the regex, which keeps clean text cheap.
    hints: tuple[str, ...] = ()
    lowercase_hints: bool = False


def _scan(detector: str, text: str, rules: Sequence[_Rule], field: str) -> list[Finding]:
    """One finding per reason; rules earlier in the list claim their spans first, so a number already
    reported as an IBAN is not reported again as a card or a phone."""
    lowered = text.lower()
    # Claimed spans never overlap, so sorted starts and ends let bisect find the only two neighbours to check.
    starts: list[int] = []
    ends: list[int] = []
    by_reason: dict[str, tuple[Severity, list[str], list[Span]]] = {}
    for rule in rules:
        if rule.hints:
            haystack = lowered if rule.lowercase_hints else text
            if not any(hint in haystack for hint in rule.hints):
                continue
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
            _, shown_list, spans = by_reason.setdefault(rule.reason, (rule.severity, [], []))
            shown_list.append(shown)
            spans.append(Span(field, start, end))
    return [
        Finding(detector, severity, reason, tuple(dict.fromkeys(shown)), tuple(spans))
        for reason, (severity, shown, spans) in by_reason.items()
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
# An extension ("x204", "ext. 204") belongs to the number; "-Office" after it does not make it another token.
_PHONE_US = re.compile(
    r"(?<![\w+-])(?:(?:\+?1|001)[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}[ .-])([2-9]\d{2})[ .-](\d{4})"
    r"(?:\s?(?:x|ext\.?)\s?\d{1,6})?(?!\w|-\d|[.,]\d)"
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
# UK National Insurance number: two prefix letters (D, F, I, Q, U, V never; O not second), six digits, A-D.
_NINO = re.compile(
    r"(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
)
_NINO_NEVER_ISSUED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
# Spanish DNI (8 digits) and NIE (X, Y or Z and 7 digits), each with a check letter.
_DNI = re.compile(r"(?<![\w-])([XYZ]?)(\d{7,8})-?([A-Z])(?![\w-])")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


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


def _nino_evidence(match: re.Match[str]) -> str | None:
    return None if match.group(1) in _NINO_NEVER_ISSUED else _mask(match.group(), keep_tail=1)


def _dni_evidence(match: re.Match[str]) -> str | None:
    prefix, digits, letter = match.groups()
    if len(prefix) + len(digits) != 8:
        return None
    number = int(str("XYZ".index(prefix)) + digits if prefix else digits)
    return _mask(match.group(), keep_tail=1) if _DNI_LETTERS[number % 23] == letter else None


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
    _Rule("answer contains a national insurance number", Severity.HIGH, _NINO, _nino_evidence),
    _Rule("answer contains a national identity number", Severity.HIGH, _DNI, _dni_evidence),
    _Rule("answer contains a phone number", Severity.MEDIUM, _PHONE_INTERNATIONAL, _intl_phone_evidence),
    _Rule("answer contains a phone number", Severity.MEDIUM, _PHONE_US, _us_phone_evidence),
    _Rule("answer contains an email address", Severity.MEDIUM, _EMAIL, _email_evidence, ("@",)),
)
# Every number above has at least 6 characters of digits and separators in a row; amounts and years
# ("412,000 USD in 2026") have not, so most answers skip the number rules with this one scan.
_DIGIT_CLUSTER = re.compile(r"\d[\d \-.()/]{4,}\d")
_PII_RULES_WITHOUT_NUMBERS = tuple(rule for rule in _PII_RULES if rule.hints)


class PiiDetector:
    """Personal data in an answer: the model may have copied it from a source into a reply that travels
    further than the source does."""

    name = "pii"
    tier = Tier.INLINE
    sample_rate = 1.0

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        rules = _PII_RULES if _DIGIT_CLUSTER.search(event.answer) else _PII_RULES_WITHOUT_NUMBERS
        return _scan(self.name, event.answer, rules, "answer")


# --- secret ------------------------------------------------------------------------------------------------

_AWS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
# The secret half has no prefix of its own, so it needs its name nearby.
_AWS_SECRET = re.compile(
    r"aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])", re.I
)
_GOOGLE_API_KEY = re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])")
_GCP_SERVICE_ACCOUNT = re.compile(r"\"private_key_id\"\s*:\s*\"([0-9a-f]{40})\"")
_AZURE_STORAGE_KEY = re.compile(r"AccountKey=([A-Za-z0-9+/]{86}==)")
_OPENAI_KEY = re.compile(
    r"(?<![\w-])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}"
)
_STRIPE_KEY = re.compile(r"(?<![\w-])(?:sk|rk)_live_[A-Za-z0-9]{20,}(?![\w-])")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_JWT = re.compile(r"(?<![\w-])(eyJ[A-Za-z0-9_-]+)\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?![\w-])")
_GITHUB_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])"
)
# Real Slack tokens start with a numeric team or user id; docs write "xoxb-your-token".
_SLACK_TOKEN = re.compile(r"(?<![A-Za-z0-9-])xox[baprs]-\d+-[A-Za-z0-9-]{10,}")
_SLACK_WEBHOOK = re.compile(
    r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{20,}"
)
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{1,30})://([^\s:/@]+):([^\s/@]+)@([^\s/?#@]+)")
# ADO.NET, ODBC and JDBC-style "key=value;" strings, and libpq's "key=value key=value": a password key
# counts only next to a server or user key, so prose such as "password=at least 12 characters" does not.
_CONNECTION_PASSWORD = re.compile(
    r"(?i:\b(?:server|host|data source|address|addr|uid|user id|user|username|dbname|database"
    r"|initial catalog)"
    r"\s*=\s*[^;\s]+\s*[;\s]\s*(?:[\w ]{1,20}=[^;\s]*\s*[;\s]\s*){0,4}?(?:password|pwd)\s*=\s*)"
    r"(\"[^\"]+\"|'[^']+'|[^;\s'\"]+)"
)
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


def _named_value_evidence(match: re.Match[str]) -> str | None:
    """For "name = value" secrets: the name as written, the value redacted."""
    value = match.group(1).strip("\"'")
    if _PLACEHOLDER.fullmatch(value):
        return None
    return match.group()[: match.start(1) - match.start()] + _redact(value)


def _typed_token_evidence(keep_head: int) -> Callable[[re.Match[str]], str | None]:
    return lambda match: _redact(match.group(), keep_head)


_SECRET_RULES = tuple(
    _Rule(f"answer contains {what}", Severity.HIGH, pattern, evidence, hints, lowercase)
    for what, pattern, evidence, hints, lowercase in (
        ("a private key", _PRIVATE_KEY, lambda m: m.group(), ("PRIVATE KEY",), False),
        ("an AWS access key id", _AWS_KEY_ID, _typed_token_evidence(4), ("AKIA", "ASIA"), False),
        ("an AWS secret access key", _AWS_SECRET, _named_value_evidence, ("aws",), True),
        ("a Google API key", _GOOGLE_API_KEY, _typed_token_evidence(4), ("AIza",), False),
        ("a Google service account key", _GCP_SERVICE_ACCOUNT, _named_value_evidence, ("_key_id",), False),
        ("an Azure storage account key", _AZURE_STORAGE_KEY, _named_value_evidence, ("AccountKey=",), False),
        ("an OpenAI API key", _OPENAI_KEY, _typed_token_evidence(3), ("sk-",), False),
        ("a Stripe secret key", _STRIPE_KEY, _typed_token_evidence(8), ("_live_",), False),
        ("a GitHub token", _GITHUB_TOKEN, _typed_token_evidence(4), ("gh", "github_pat_"), False),
        ("a Slack token", _SLACK_TOKEN, _typed_token_evidence(5), ("xox",), False),
        ("a Slack webhook URL", _SLACK_WEBHOOK, _typed_token_evidence(33), ("hooks.slack.com",), False),
        ("a JSON web token", _JWT, _jwt_evidence, ("eyJ",), False),
        ("a password in a URL", _URL_CREDENTIALS, _url_credentials_evidence, ("://",), False),
        (
            "a password in a connection string",
            _CONNECTION_PASSWORD,
            _named_value_evidence,
            ("password", "pwd"),
            True,
        ),
        ("an API key", _API_KEY, _named_value_evidence, ("api",), True),
    )
)


class SecretDetector:
    """Credentials in an answer: whoever reads it can use them, so each one needs rotating at once."""

    name = "secret"
    tier = Tier.INLINE
    sample_rate = 1.0

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        return _scan(self.name, event.answer, _SECRET_RULES, "answer")


# --- prompt_injection --------------------------------------------------------------------------------------

_FILLER = r"(?:(?:all|any|the|of|your|these|those|my)\s+){0,3}"
_EARLIER = r"(?:previous|prior|above|earlier|preceding|foregoing)"
_RULES_NOUN = r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|guardrails)"
# Bare "you are now", "developer mode" and "jailbreak" are everyday words in IT how-tos ("you are now signed
# in", "enable developer mode", "jailbroken phones may not enrol"), so each phrase needs its attack context.
# DAN is matched in capitals only: "act as Dan's backup" is not an attack.
_DAN = r"(?-i:DAN)"


def _patterns(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.I)


# (words one of which every match contains, the patterns): a text runs only the patterns whose words it has,
# so ordinary passages cost a few substring searches instead of one long alternation per character.
_INJECTION_RULES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    (
        ("ignore", "forget", "override", "disregard"),
        _patterns(
            rf"\b(?:ignore|forget|override)\s+{_FILLER}(?:{_EARLIER}|following)"
            rf"(?:\s+(?:and|or|&)\s+(?:{_EARLIER}|following))?\s+{_RULES_NOUN}",
            rf"\bdisregard\s+{_FILLER}(?:(?:{_EARLIER}|system|safety)\s+)?{_RULES_NOUN}",
            r"\b(?:ignore|forget|disregard)\s+(?:all\s+)?(?:the\s+)?(?:instructions|rules|guidelines)\s+you\s+"
            r"(?:got|were\s+given|received|have\s+been\s+given)",
            r"\bforget\s+everything\s+(?:you\s+(?:learned|know|were\s+told)|from|above|before)\b",
        ),
    ),
    (
        ("now",),
        _patterns(
            rf"\byou\s+are\s+now\s+(?:{_DAN}\b|in\s+(?:developer|god|jailbreak|unrestricted|maintenance|{_DAN})"
            r"\s+mode|(?:jailbroken|unrestricted|unfiltered|uncensored)\b"
            rf"|no\s+longer\s+(?:bound|restricted|limited)\s+by\s+{_FILLER}(?:restrictions|policies|{_RULES_NOUN})"
            r"|an?\s+(?:\w+\s+){0,2}(?:AI|assistant|chatbot|language\s+model|bot)\b)",
            r"\bdo\s+anything\s+now\b",
            r"\bfrom\s+now\s+on,?\s+you\s+(?:are\s+going\s+to|will|must|shall|'re\s+going\s+to)\s+"
            r"(?:act\s+as|pretend|respond\s+as|answer\s+as|play\s+the\s+role|simulate)",
        ),
    ),
    (
        ("act as", "pretend", "simulate"),
        _patterns(
            rf"\bact\s+as\s+(?:{_DAN}\b|an?\s+(?:unrestricted|unfiltered|uncensored|jailbroken)\b)",
            r"\b(?:act\s+as|pretend\s+to\s+be|simulate)\s+(?:\w+\s+){0,3}(?:in|with)\s+developer\s+mode",
            r"\b(?:act\s+as|pretend\s+to\s+be|simulate)\s+(?:\w+\s+){0,3}with\s+\w+\s+mode\s+enabled",
        ),
    ),
    (
        # System prompt extraction.
        ("system", "instructions", "prompt", "given"),
        _patterns(
            r"\b(?:reveal|show|print|repeat|output|leak|display|dump|encode|translate)\s+(?:me\s+)?(?:your|the)\s+"
            r"(?:(?:full|entire|original|hidden|initial|secret|starting)\s+)?"
            r"(?:system\s+(?:prompt|message)|(?:system|initial|hidden|starting)\s+instructions)",
            r"\byour\s+(?:initial|original|starting|hidden|system|secret)\s+(?:instructions|prompt)\b",
            r"\b(?:repeat|show|display|see|print|output|reveal|dump|tell\s+me)\s+(?:me\s+)?(?:\w+\s+){0,3}"
            r"(?:system\s*prompt|system\s+message)",
            r"\b(?:instructions|rules)\s+you\s+(?:were|have\s+been)\s+given\b",
            r"\bsystem_?prompt\b",
        ),
    ),
    (
        ("developer", "jailbr"),
        _patterns(
            r"\bdeveloper\s+mode\s+(?:output|response)s?\b",
            r"\bjailbreak\s+(?:mode|prompt)\b",
            r"\bjailbr(?:eak|oken)\s+(?:(?:the|this|your)\s+)?(?:AI|assistant|chatbot|model|copilot|LLM|GPT)\b",
        ),
    ),
    (
        # Role-play jailbreaks (DAN and its many descendants).
        ("abide", "adhere", "comply", "bound", "confines", "free", "immerse", "character"),
        _patterns(
            r"\b(?:not|never|no\s+longer)\s+(?:have\s+to\s+)?(?:abide|adhere|comply|bound)\s+(?:by|to|with)\s+"
            r"(?:any|the|their|its|OpenAI'?s?)\s+(?:\w+\s+){0,2}(?:rules|restrictions|policies|policy|guidelines)",
            r"\bbroken\s+free\s+of\s+the\s+(?:typical\s+)?confines\b",
            r"\bfree\s+(?:of|from)\s+all\s+(?:\w+\s+){0,2}(?:restrictions|filters|limitations)",
            r"\bimmerse\s+yourself\s+(?:in|into)\s+the\s+role\b",
            r"\bstay\s+in\s+character\s*(?:[.!,;]|$|at\s+all\s+times|no\s+matter)",
        ),
    ),
    (
        ("above", "told", "stop everything"),
        _patterns(
            r"\b(?:repeat|output|print|show)\s+(?:\w+\s+){0,3}(?:text|instructions|everything)\s+above\b",
            r"\b(?:repeat|output|print)\s+the\s+above\s+text",
            r"\bwhat\s+were\s+you\s+told\b",
            r"\bstop\s+everything\W+(?:\w+\W+){0,2}just\s+(?:print|say)\b",
        ),
    ),
)
_INJECTION_HINTS = frozenset(hint for hints, _ in _INJECTION_RULES for hint in hints)


def _normalize(text: str) -> tuple[str, list[int] | None]:
    """NFKC folds full-width and other look-alike letters; dropping format characters (zero-width spaces,
    soft hyphens, bidi marks) stops them from splitting a phrase invisibly. Returns the text and, when it
    changed, the original index of each character so evidence spans point into the event's text."""
    if not needs_folding(text):
        return text, None
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        if unicodedata.category(char) == "Cf":
            continue
        for out in unicodedata.normalize("NFKC", char):
            chars.append(out)
            origin.append(index)
    return "".join(chars), origin


def _injection_phrases(text: str, field: str) -> tuple[tuple[str, ...], tuple[Span, ...]]:
    normalized, origin = _normalize(text)
    lowered = normalized.lower()
    present = {hint for hint in _INJECTION_HINTS if hint in lowered}
    if not present:
        return (), ()
    matches: list[re.Match[str]] = []
    for hints, pattern in _INJECTION_RULES:
        if not present.isdisjoint(hints):
            matches.extend(pattern.finditer(normalized))
    phrases: dict[str, None] = {}
    spans: list[Span] = []
    for match in sorted(matches, key=lambda m: m.start()):
        start, end = match.span()
        if origin is not None:
            start, end = origin[start], origin[end - 1] + 1
        phrases.setdefault(" ".join(match.group().split()))
        spans.append(Span(field, start, end))
    return tuple(phrases), tuple(spans)


def _passage_field(passage_id: str) -> str:
    return f"passage:{passage_id}"


class PromptInjectionDetector:
    """Instructions aimed at the model. In a retrieved passage it is indirect injection: someone planted it in
    a document, so it is worse than a user trying their luck in the question."""

    name = "prompt_injection"
    tier = Tier.INLINE
    sample_rate = 1.0

    def __init__(self, passage_cache_size: int = 8192) -> None:
        # The same chunks come back in answer after answer; each is scanned once while it stays cached.
        self._passage_phrases = (
            functools.lru_cache(maxsize=passage_cache_size)(_injection_phrases)
            if passage_cache_size
            else _injection_phrases
        )

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        findings: list[Finding] = []
        question_phrases, spans = _injection_phrases(event.question, "question")
        if question_phrases:
            findings.append(self._finding(Severity.MEDIUM, "question", question_phrases, spans))
        for number, passage in enumerate(event.passages, start=1):
            passage_id = passage.chunk_id or str(number)
            field = _passage_field(passage_id)
            phrases, spans = self._passage_phrases(passage.text, field)
            # Ingest's own check marks the chunk (passage.suspicious); its patterns and ours overlap but
            # differ, and either one is enough. Uncited passages count too: planted instructions act on the
            # model whether or not the answer cites the passage they came in.
            marks = tuple(passage.suspicion) or (("unspecified",) if passage.suspicious else ())
            if not phrases and not marks:
                continue
            where = f"passage {passage_id}"
            finding = self._finding(Severity.HIGH, where, phrases, spans)
            if marks:
                cited = "; the answer cites it" if number in event.cited_sources else ""
                finding = Finding(
                    self.name,
                    Severity.HIGH,
                    f"{finding.reason}, marked suspicious at ingest ({', '.join(marks)}){cited}",
                    (f"{where}: marked suspicious at ingest: {', '.join(marks)}", *finding.evidence),
                    spans or (Span(field, 0, len(passage.text)),),
                )
            findings.append(finding)
        return findings

    def _finding(
        self, severity: Severity, where: str, phrases: tuple[str, ...], spans: tuple[Span, ...]
    ) -> Finding:
        return Finding(
            detector=self.name,
            severity=severity,
            reason=f"possible prompt injection in the {where}",
            evidence=tuple(f"{where}: {phrase}" for phrase in phrases),
            spans=spans,
        )


# --- ungrounded --------------------------------------------------------------------------------------------

_CITATION = re.compile(r"\[(\d{1,4}(?:\s*,\s*\d{1,4})*)\]")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_LEADING_CITATIONS = re.compile(r"(?:\s*\[\d{1,4}(?:\s*,\s*\d{1,4})*\])+")
# The end of a sentence: its full stop, then any closing quotes, brackets or emphasis and citation markers.
_ENDS_SENTENCE = re.compile(r"[.!?][\"'”’)*_]*(?:\s*\[\d{1,4}(?:\s*,\s*\d{1,4})*\])*\s*$")
# Only words longer than two letters: shorter ones are dropped before the list is consulted.
_LONG_WORD = re.compile(r"\w{3,}")
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


def _finished(answer: str) -> str:
    """An interrupted answer up to the end of its last finished sentence. The words after it stop wherever the
    caller cancelled: half a claim, which no source can be asked to support, and whose citation may not have
    been written yet."""
    if _ENDS_SENTENCE.search(answer):
        return answer
    breaks = list(_SENTENCE_BREAK.finditer(answer))
    if not breaks:
        return ""
    end = breaks[-1].start()
    # Citations written after the full stop ("... grew. [2] Then") belong to the sentence before them.
    leading = _LEADING_CITATIONS.match(answer, end)
    return answer[: leading.end()] if leading else answer[:end]


def _cited_numbers(text: str) -> list[int]:
    return [int(number) for match in _CITATION.finditer(text) for number in match.group(1).split(",")]


def _content_words(text: str) -> frozenset[str]:
    return frozenset(_LONG_WORD.findall(text.lower())) - _STOP_WORDS


# Popular documents are cited over and over; their words need computing once.
_passage_words = functools.lru_cache(maxsize=4096)(_content_words)


def _answer_spans(answer: str, sentences: Iterable[str]) -> tuple[Span, ...]:
    spans = []
    for sentence in sentences:
        at = answer.find(sentence)
        if at >= 0:
            spans.append(Span("answer", at, at + len(sentence)))
    return tuple(spans)


class UngroundedDetector:
    """Answers that do not rest on their sources: no citation, a citation to a source the model never saw
    (invented), or a cited sentence its sources do not support. Generation's own sentence checks (embedding
    similarity and word overlap) decide the last when the event carries them; otherwise a cheap lexical
    proxy does. An answer the caller cut off is judged up to its last finished sentence (``_finished``),
    except for citations of sources it was not given: the user saw those wherever they stand."""

    name = "ungrounded"
    tier = Tier.INLINE
    sample_rate = 1.0

    def __init__(self, min_support: float = 0.3) -> None:
        self.min_support = min_support

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        if event.refused:
            return []
        # On the whole answer, an interrupted one's unfinished sentence included: however that sentence would
        # have ended, the user saw a number that points at no source.
        invalid = self._invalid_citations(event.answer, len(event.passages))
        if invalid:
            return invalid
        answer = _finished(event.answer) if event.interrupted else event.answer
        if not answer.strip():
            return []
        if not _cited_numbers(answer):
            return [
                Finding(
                    self.name,
                    Severity.MEDIUM,
                    "answer cites no source",
                    (),
                    (Span("answer", 0, len(answer)),),
                )
            ]

        sentences = _sentences(answer)
        if event.sentences:
            # Generation's last sentence is the unfinished one when the answer lost its tail above.
            judged = event.sentences if answer == event.answer else event.sentences[:-1]
            return self._from_generation_checks(event, judged)
        findings = []
        for sentence in sentences:
            numbers = set(_cited_numbers(sentence))
            words = _content_words(_CITATION.sub(" ", sentence))
            if not numbers or not words:
                continue
            support: set[str] = set()
            for number in numbers:
                passage = event.passages[number - 1]
                support |= _passage_words(passage.title) | _passage_words(passage.text)
            if len(words & support) / len(words) < self.min_support:
                reason = "sentence poorly supported by its citation"
                findings.append(
                    Finding(self.name, Severity.LOW, reason, (sentence,), _answer_spans(answer, (sentence,)))
                )
        return findings

    def _invalid_citations(self, answer: str, given: int) -> list[Finding]:
        """One finding per cited source number outside 1..given. When there are any, inspect judges nothing
        else: a sentence citing such a number has no passage to be judged against."""
        invalid = sorted({number for number in _cited_numbers(answer) if not 1 <= number <= given})
        sentences = _sentences(answer) if invalid else []
        findings = []
        for number in invalid:
            citing = tuple(s for s in sentences if number in _cited_numbers(s))
            reason = f"cites source {number} which was not given"
            findings.append(Finding(self.name, Severity.HIGH, reason, citing, _answer_spans(answer, citing)))
        return findings

    def _from_generation_checks(
        self, event: events_pb2.InteractionEvent, sentences: Sequence[events_pb2.SentenceSupport]
    ) -> list[Finding]:
        """Generation scored each sentence against its cited passages, a better judge than the lexical
        fallback above; the monitor turns its verdicts into flags."""
        unsupported = [s for s in sentences if s.verdict == events_pb2.SUPPORT_VERDICT_UNSUPPORTED]
        # Supported by a source they do not cite: a citation error, not an invented claim.
        miscited = [s for s in unsupported if s.supported_by]
        invented = [s for s in unsupported if not s.supported_by]
        uncited = [s for s in sentences if s.verdict == events_pb2.SUPPORT_VERDICT_UNCITED]
        findings = []
        if invented:
            reason = f"{len(invented)} sentence(s) not supported by the sources they cite"
            evidence = tuple(f"{s.text} (support {s.support:.2f})" for s in invented)
            spans = _answer_spans(event.answer, (s.text for s in invented))
            findings.append(Finding(self.name, Severity.MEDIUM, reason, evidence, spans))
        if miscited:
            reason = f"{len(miscited)} sentence(s) cite the wrong source: another given source supports them"
            evidence = tuple(f"{s.text} (supported by {_source_list(s.supported_by)})" for s in miscited)
            spans = _answer_spans(event.answer, (s.text for s in miscited))
            findings.append(Finding(self.name, Severity.LOW, reason, evidence, spans))
        if uncited:
            reason = f"{len(uncited)} sentence(s) cite no source"
            evidence = tuple(
                f"{s.text} (supported by {_source_list(s.supported_by)})" if s.supported_by else s.text
                for s in uncited
            )
            spans = _answer_spans(event.answer, (s.text for s in uncited))
            findings.append(Finding(self.name, Severity.LOW, reason, evidence, spans))
        return findings


def _source_list(numbers: Iterable[int]) -> str:
    return " ".join(f"[{n}]" for n in numbers)


# --- refusal -----------------------------------------------------------------------------------------------

# The model declining in its own words, although sources were given: a wrong "no" is as costly as a wrong
# answer, and a "no" to a harmless question shows a prompt or retrieval problem.
_MODEL_REFUSAL = re.compile(
    r"\b(?:I(?:['’]m| am)\s+(?:really\s+)?sorry,?\s+(?:but\s+)?I\s+"
    r"(?:can(?:no|['’])t|am\s+(?:not\s+able|unable)|won['’]t)"
    r"|my\s+apologies,?\s+but"
    r"|I\s+(?:can(?:no|['’])t|(?:am|['’]m)\s+(?:not\s+able|unable)\s+to|won['’]t|must\s+decline\s+to|will\s+not)\s+"
    r"(?:help|assist|provide|answer|comply|share|fulfil|fulfill|do\s+that|support|create|generate|write)"
    r"|I\s+(?:apologi[sz]e|must\s+decline)"
    r"|(?:the\s+)?(?:provided\s+)?(?:sources|documents|context)\s+(?:available\s+to\s+(?:me|you)\s+)?"
    r"(?:do(?:es)?\s+not|don['’]t)\s+(?:contain|cover|mention|include|provide)"
    r"|I\s+(?:do\s+not|don['’]t)\s+(?:have|know)\s+(?:enough\s+)?(?:information|the\s+answer|that)"
    r"|(?:as\s+an?\s+(?:AI|language\s+model|assistant)\b))",
    re.I,
)
# Every refusal pattern contains one of these; an opening without any of them skips the regex.
_REFUSAL_HINTS = (
    "sorry",
    "can't",
    "can’t",
    "cannot",
    "unable",
    "won",
    "will not",
    "decline",
    "apolog",
    "not ",
    "n't",
    "n’t",
    "as a",
)


class RefusalDetector:
    """Refusals point at coverage gaps (questions no readable document answers); empty answers at failures;
    the model refusing in its own words although it had sources, at a prompt or retrieval problem."""

    name = "refusal"
    tier = Tier.INLINE
    sample_rate = 1.0
    # Refusal wording sits in the opening of an answer; a long answer that mentions "I cannot" later on is
    # an answer.
    opening_chars = 300

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        # A refusal or an empty answer is about the question nothing answered: the span marks all of it.
        question = (Span("question", 0, len(event.question)),) if event.question else ()
        if event.refused:
            reason = "no readable source covered the question"
            return [Finding(self.name, Severity.LOW, reason, (event.question,), question)]
        if not event.answer.strip():
            return [Finding(self.name, Severity.MEDIUM, "empty answer", (event.question,), question)]
        opening = event.answer[: self.opening_chars]
        lowered = opening.lower()
        match = _MODEL_REFUSAL.search(opening) if any(h in lowered for h in _REFUSAL_HINTS) else None
        if match:
            reason = "the model declined to answer although sources were given"
            span = Span("answer", match.start(), match.end())
            return [Finding(self.name, Severity.LOW, reason, (match.group(),), (span,))]
        return []


# --- latency and length ------------------------------------------------------------------------------------


class _RobustBaseline:
    """Median and MAD of each model's recent values. A few wild values do not move them the way they move a
    mean and standard deviation. Recomputed every ``refresh_every`` values, which is plenty for a baseline
    of hundreds and keeps the per-event cost flat."""

    # 1.4826 * MAD estimates the standard deviation of a normal distribution.
    mad_scale = 1.4826

    def __init__(self, window: int, min_samples: int, refresh_every: int = 10) -> None:
        self.window = window
        self.min_samples = min_samples
        self.refresh_every = refresh_every
        self._recent: dict[str, deque[float]] = {}
        self._fitted: dict[str, tuple[float, float]] = {}
        self._since_fit: dict[str, int] = {}

    def center_and_scale(self, model: str) -> tuple[float, float] | None:
        """(median, 1.4826 * MAD) of the model's recent values, or None while it has too few of them."""
        recent = self._recent.get(model)
        if recent is None or len(recent) < self.min_samples:
            return None
        if model not in self._fitted or self._since_fit[model] >= self.refresh_every:
            median = statistics.median(recent)
            mad = statistics.median(abs(x - median) for x in recent)
            self._fitted[model] = (median, self.mad_scale * mad)
            self._since_fit[model] = 0
        return self._fitted[model]

    def add(self, model: str, value: float) -> None:
        self._recent.setdefault(model, deque(maxlen=self.window)).append(value)
        self._since_fit[model] = self._since_fit.get(model, 0) + 1


class LatencyDetector:
    """Slow answers, two ways: above an absolute ceiling (users give up long before a timeout fires), and
    outliers against the model's own recent answers by median and MAD. An answer the caller cut off is left
    out: its time says when they cancelled, not how long the model took."""

    name = "latency"
    tier = Tier.INLINE
    sample_rate = 1.0
    # 5 robust standard deviations is rare enough that a flag means something changed.
    outlier_sigmas = 5.0

    def __init__(self, ceiling_ms: float = 60_000.0) -> None:
        if ceiling_ms <= 0:
            raise ValueError(f"ceiling_ms must be positive, got {ceiling_ms}")
        self.ceiling_ms = ceiling_ms
        self._baseline = _RobustBaseline(window=200, min_samples=30)

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        if event.interrupted:
            return []
        fitted = self._baseline.center_and_scale(event.model)
        self._baseline.add(event.model, event.total_ms)
        evidence = (
            f"model={event.model}",
            f"retrieval_ms={event.retrieval_ms:.0f}",
            f"first_token_ms={event.first_token_ms:.0f}",
            f"total_ms={event.total_ms:.0f}",
        )
        if event.total_ms > self.ceiling_ms:
            reason = f"answer took {event.total_ms:.0f} ms, above the {self.ceiling_ms:.0f} ms ceiling"
            return [Finding(self.name, Severity.LOW, reason, evidence)]
        if fitted is not None:
            median, scale = fitted
            limit = median + self.outlier_sigmas * max(scale, 0.05 * median)
            if event.total_ms > limit:
                reason = f"answer took {event.total_ms:.0f} ms, far above its model's recent {limit:.0f} ms"
                return [Finding(self.name, Severity.LOW, reason, evidence)]
        return []


class LengthDetector:
    """Answers far longer or shorter than the model's recent ones: a runaway generation repeating itself, a
    truncated stream, or a prompt change nobody announced. Lengths are skewed, so the baseline is the median
    and MAD of log word counts; refusals and empty answers are left to the refusal detector. An answer the
    caller cut off is left out too: its length says when they cancelled, not what the model wrote."""

    name = "length"
    tier = Tier.INLINE
    sample_rate = 1.0
    outlier_sigmas = 5.0
    # In log space 0.1 is about 10 %: answers of nearly equal length must not make every change an outlier.
    min_scale = 0.1

    def __init__(self, window: int = 200, min_samples: int = 30) -> None:
        self._baseline = _RobustBaseline(window=window, min_samples=min_samples)

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        if event.refused or event.interrupted or not event.answer.strip():
            return []
        words = len(event.answer.split())
        value = math.log(words)
        fitted = self._baseline.center_and_scale(event.model)
        self._baseline.add(event.model, value)
        if fitted is None:
            return []
        median, scale = fitted
        sigmas = (value - median) / max(scale, self.min_scale)
        if abs(sigmas) <= self.outlier_sigmas:
            return []
        typical = round(math.exp(median))
        direction = "longer" if sigmas > 0 else "shorter"
        reason = f"answer of {words} words, far {direction} than its model's typical {typical}"
        evidence = (
            f"model={event.model}",
            f"words={words}",
            f"typical_words={typical}",
            f"sigmas={sigmas:+.1f}",
        )
        return [Finding(self.name, Severity.LOW, reason, evidence)]


# --- toxicity ----------------------------------------------------------------------------------------------


def _toxicity_severity(hit: LexiconHit, in_answer: bool) -> Severity:
    """Slurs and threats are worst, then strong profanity, then mild; the model saying it is worse than a user
    typing it, so the question counts one level lower."""
    if hit.identity_attack or hit.category == "threat":
        level = Severity.HIGH
    elif hit.rating >= 1.5:
        level = Severity.MEDIUM
    else:
        level = Severity.LOW
    return level if in_answer else Severity(max(Severity.LOW, level - 1))


def _toxicity_kind(hit: LexiconHit) -> str:
    if hit.category == "threat":
        return "threat"
    return "slur" if hit.identity_attack else "profanity"


class ToxicityDetector:
    """Slurs, threats and profanity in the answer (the model said it) or the question (a user said it), by
    lexicon; see services/monitor/toxicity.py for the list and the de-obfuscation."""

    name = "toxicity"
    tier = Tier.INLINE
    sample_rate = 1.0

    def __init__(self, lexicon: ToxicityLexicon | None = None) -> None:
        self._lexicon = lexicon or ToxicityLexicon.load()

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        findings = []
        for field, text in (("answer", event.answer), ("question", event.question)):
            hits = self._lexicon.find(text)
            if not hits:
                continue
            severity = max(_toxicity_severity(hit, field == "answer") for hit in hits)
            kinds = sorted({_toxicity_kind(hit) for hit in hits})
            reason = f"{' and '.join(kinds)} in the {field}"
            evidence = tuple(
                dict.fromkeys(f"{mask_term(text[h.start : h.end])} ({h.category})" for h in hits)
            )
            spans = tuple(Span(field, h.start, h.end) for h in hits)
            findings.append(Finding(self.name, severity, reason, evidence, spans))
        return findings


class ToxicityClassifierDetector:
    """Offensive answers by alt-profanity-check's linear classifier: it also scores insults without a listed
    word, at about a millisecond an event, so it runs in the sampled tier."""

    name = "toxicity_classifier"
    tier = Tier.SAMPLED

    def __init__(
        self, classifier: ProfanityClassifier | None = None, sample_rate: float = 0.1, threshold: float = 0.8
    ) -> None:
        self.sample_rate = sample_rate
        self.threshold = threshold
        self._classifier = classifier or ProfanityClassifier()

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        answer_p, question_p = self._classifier.probabilities([event.answer, event.question])
        findings = []
        for field, text, p in (("answer", event.answer, answer_p), ("question", event.question, question_p)):
            if p >= self.threshold:
                severity = Severity.MEDIUM if field == "answer" else Severity.LOW
                reason = f"offensive language in the {field} (classifier {p:.2f})"
                findings.append(
                    Finding(self.name, severity, reason, (f"p={p:.2f}",), (Span(field, 0, len(text)),))
                )
        return findings


# --- acl anomaly -------------------------------------------------------------------------------------------


class AccessDetector:
    """Defence in depth: every passage the answer was built from must have been granted to the caller by
    'everyone', the caller's own user entry, or one of the groups the event says they hold. Retrieval filters
    inside the vector query, so a hit here means a bug or a tampered index, never a normal day.

    The grant is read from the passage's ``access_reason``. Generation names the caller's own user entry by
    the event's pseudonymous user id ("user:<user_id>", see ``services.generation.answerer.event_passages``),
    so a user entry naming anyone else is an anomaly. Every passage is checked, cited or not: an uncited one
    was still in the model's prompt and may have leaked into the answer unattributed. A cited one was also
    shown to the user as a source, so it weighs more: HIGH, where only uncited ones are MEDIUM."""

    name = "acl_anomaly"
    tier = Tier.INLINE
    sample_rate = 1.0

    def __init__(self, role_groups: Mapping[str, Sequence[str]] | None = None) -> None:
        # Retrieval lets a role's holders read as the groups mapped to it; the same mapping applies here.
        self._role_groups = role_groups or {}

    def inspect(self, event: events_pb2.InteractionEvent) -> list[Finding]:
        groups = {*event.groups, *(g for role in event.roles for g in self._role_groups.get(role, ()))}
        allowed = {"everyone", *(f"group:{g}" for g in groups)}
        if event.user_id:
            allowed.add(f"user:{event.user_id}")
        cited = set(event.cited_sources)
        suspicious = [
            (number, p)
            for number, p in enumerate(event.passages, 1)
            if not p.access_reason or p.access_reason not in allowed
        ]
        if not suspicious:
            return []
        if any(number in cited for number, _ in suspicious):
            severity, reason = Severity.HIGH, "answer cited passages the caller may not read"
        else:
            severity = Severity.MEDIUM
            reason = "answer was written from passages the caller may not read (none of them cited)"
        evidence = tuple(
            f"[{number}] {p.chunk_id} ({p.title}): granted by {p.access_reason or 'nothing'}, "
            f"{'cited' if number in cited else 'not cited'}"
            for number, p in suspicious
        )
        spans = tuple(Span(_passage_field(p.chunk_id), 0, len(p.text)) for _, p in suspicious)
        return [Finding(self.name, severity, reason, evidence, spans)]
