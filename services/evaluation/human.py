"""Human evaluation through the monitor's review queue: a sample of answers goes out as evaluation tasks
(good or bad against written criteria), and the reviewers' verdicts and their agreement come back into
the report card."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from copilot.monitor.v1 import monitor_pb2
from services.evaluation.runner import VariantRun
from services.evaluation.scoring import ItemResult

CRITERIA = (
    "GOOD only if all hold: the answer is correct and answers the question asked; every statement is "
    "supported by the passage it cites; it says nothing the passages do not; it would be fine for the "
    "asker to read. Otherwise BAD, and say which criterion failed."
)
_COEFFICIENTS = ("percent_agreement", "krippendorff_alpha", "gwet_ac1", "fleiss_kappa")


def pick_samples(results: Sequence[ItemResult], n: int, seed: int) -> list[ItemResult]:
    """``n`` answered (not refused) questions, drawn with a fixed seed so a rerun sends the same ones."""
    if n < 1:
        raise ValueError(f"sample size must be positive, got {n}")
    answered = sorted((r for r in results if not r.refused), key=lambda r: r.id)
    return random.Random(seed).sample(answered, min(n, len(answered)))


def evaluation_samples(
    run: VariantRun, chosen: Sequence[ItemResult], batch: str
) -> list[monitor_pb2.EvaluationSample]:
    return [
        monitor_pb2.EvaluationSample(
            question=r.question,
            answer=r.answer,
            passages=run.passages.get(r.id, []),
            criteria=CRITERIA,
            batch=batch,
            # Resubmitting the same run and question returns the existing task instead of a duplicate.
            sample_id=f"{run.name}:{r.id}",
        )
        for r in chosen
    ]


def _verdict(item: Mapping[str, Any]) -> str:
    """ "good", "bad" or "pending": the resolved verdict, else nothing yet."""
    final = str(item.get("final_verdict") or "").removeprefix("REVIEW_VERDICT_")
    if item.get("state") == "REVIEW_STATE_RESOLVED" and final in ("GOOD", "BAD"):
        return final.lower()
    return "pending"


def _estimate(raw: Mapping[str, Any] | None) -> dict[str, float] | None:
    if not raw:
        return None
    return {k: float(raw.get(k, 0.0)) for k in ("value", "ci_low", "ci_high")}


def fold_verdicts(
    batch: str,
    items: Sequence[Mapping[str, Any]],
    agreements: Sequence[Mapping[str, Any]],
    results: Sequence[ItemResult],
) -> dict[str, Any]:
    """The batch's verdicts overall and per role (matched to the run's questions by their text), and the
    reviewers' agreement on it as the monitor measured it."""
    role_of = {r.question: r.role for r in results}
    verdicts = [(role_of.get(str(i.get("question", "")), "unmatched"), _verdict(i)) for i in items]

    def tally(chosen: Sequence[str]) -> dict[str, Any]:
        counts = Counter(chosen)
        judged = counts["good"] + counts["bad"]
        return {
            "items": len(chosen),
            "good": counts["good"],
            "bad": counts["bad"],
            "pending": counts["pending"],
            "good_rate": counts["good"] / judged if judged else None,
        }

    batch_agreement = next(
        (a for a in agreements if a.get("scope") == "AGREEMENT_SCOPE_BATCH" and a.get("name") == batch), None
    )
    agreement: dict[str, Any] = {}
    if batch_agreement:
        agreement = {
            "items": int(batch_agreement.get("items", 0)),
            "labels": int(batch_agreement.get("labels", 0)),
            "reviewers": list(batch_agreement.get("reviewers", [])),
            **{k: _estimate(batch_agreement.get(k)) for k in _COEFFICIENTS},
        }
    return {
        "batch": batch,
        "overall": tally([v for _, v in verdicts]),
        "roles": {
            role: tally([v for r, v in verdicts if r == role]) for role in sorted({r for r, _ in verdicts})
        },
        "agreement": agreement,
    }
