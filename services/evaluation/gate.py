"""The regression gate: each rule of the variants file against the figures of this run, and against the
baseline report's where the rule is relative. A failed check makes ``copilot eval`` exit non-zero."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from services.evaluation.golden import EvalInputError
from services.evaluation.scoring import summary_metrics
from services.evaluation.variants import GateConfig, GateRule

# Float noise must not fail a gate whose limit is exactly met.
_EPSILON = 1e-9
PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


def known_metrics(retrieval_k: Sequence[int]) -> set[str]:
    return {*summary_metrics(retrieval_k), "human_good_rate"}


def check_rule_names(config: GateConfig, retrieval_k: Sequence[int]) -> None:
    known = known_metrics(retrieval_k)
    unknown = [m for m in config.rules if m not in known and not m.startswith("redteam:")]
    if unknown:
        raise EvalInputError(
            f"gate rules name unknown metric(s) {', '.join(unknown)}; known: {', '.join(sorted(known))} "
            "and redteam:<family> or redteam:all"
        )


@dataclass(frozen=True)
class GateCheck:
    scope: str
    metric: str
    limit: str
    current: float | None
    baseline: float | None
    status: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _checks(
    scope: str, metric: str, rule: GateRule, current: float | None, baseline: float | None
) -> list[GateCheck]:
    out: list[GateCheck] = []

    def add(limit: str, ok: bool | None, base: float | None = None) -> None:
        status = SKIPPED if ok is None else (PASS if ok else FAIL)
        out.append(GateCheck(scope, metric, limit, current, base, status))

    if rule.min_value is not None:
        add(f">= {rule.min_value:g}", None if current is None else current >= rule.min_value - _EPSILON)
    if rule.max_value is not None:
        add(f"<= {rule.max_value:g}", None if current is None else current <= rule.max_value + _EPSILON)
    comparable = current is not None and baseline is not None
    if rule.max_drop is not None:
        ok = None if not comparable else baseline - current <= rule.max_drop + _EPSILON  # type: ignore[operator]
        add(f"drop <= {rule.max_drop:g}", ok, baseline)
    if rule.max_rise is not None:
        ok = None if not comparable else current - baseline <= rule.max_rise + _EPSILON  # type: ignore[operator]
        add(f"rise <= {rule.max_rise:g}", ok, baseline)
    return out


def evaluate_gate(
    config: GateConfig,
    current: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]] | None,
) -> list[GateCheck]:
    """Checks per scope ("overall", and "role:<name>" when the gate holds roles to the rules too).

    ``current`` and ``baseline`` map scope to metric to figure. A rule is skipped, not failed, where the
    figure does not exist (no reference answers in the set, no red-team run, no baseline report): the
    gate judges what was measured."""
    scopes = (
        ["overall", *sorted(s for s in current if s.startswith("role:"))] if config.per_role else ["overall"]
    )
    checks: list[GateCheck] = []
    for scope in scopes:
        mine = current.get(scope, {})
        theirs = (baseline or {}).get(scope, {})
        for metric, rule in config.rules.items():
            checks.extend(_checks(scope, metric, rule, mine.get(metric), theirs.get(metric)))
    return checks


def gate_passed(checks: Sequence[GateCheck]) -> bool:
    return all(c.status != FAIL for c in checks)
