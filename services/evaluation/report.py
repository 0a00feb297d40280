"""The report card: one JSON document (for machines and for the next run's --baseline), rendered as
Markdown and as a self-contained HTML page with plots."""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from services.evaluation.golden import EvalInputError, GoldenItem
from services.evaluation.metrics import paired_bootstrap
from services.evaluation.runner import VariantRun
from services.evaluation.scoring import (
    ItemResult,
    Summary,
    higher_is_better,
    label,
    quality_metrics,
    summarize_by_role,
)
from services.evaluation.shape import validated
from services.evaluation.variants import EvalConfig

SCHEMA = "copilot.eval.report/v1"
# Per-question values compared between variants: the quality metrics and the answer's latency.
_PER_ITEM_LATENCY = "latency_ms"


def _item_values(
    items: Sequence[Mapping[str, Any]], metric: str, role: str | None
) -> dict[str, float | None]:
    chosen = [i for i in items if role is None or i["role"] == role]
    if metric == _PER_ITEM_LATENCY:
        return {i["id"]: float(i["latency_ms"]) for i in chosen}
    return {i["id"]: i["metrics"].get(metric) for i in chosen}


def compare(
    baseline: str, candidate: str, variants: Mapping[str, Any], config: EvalConfig
) -> list[dict[str, Any]]:
    """Candidate minus baseline per metric, overall and per role, with paired bootstrap intervals."""
    base_items, cand_items = variants[baseline]["items"], variants[candidate]["items"]
    roles = sorted({i["role"] for i in base_items} & {i["role"] for i in cand_items})
    rows: list[dict[str, Any]] = []
    for scope, role in [("overall", None), *((f"role:{r}", r) for r in roles)]:
        for metric in [*quality_metrics(config.retrieval_k), _PER_ITEM_LATENCY]:
            difference = paired_bootstrap(
                _item_values(base_items, metric, role),
                _item_values(cand_items, metric, role),
                resamples=config.bootstrap.resamples,
                confidence=config.bootstrap.confidence,
                seed=config.bootstrap.seed,
            )
            if difference is None:
                continue
            rows.append(
                {
                    "baseline": baseline,
                    "candidate": candidate,
                    "scope": scope,
                    "metric": metric,
                    "n": difference.n,
                    "diff": difference.diff,
                    "ci_low": difference.ci_low,
                    "ci_high": difference.ci_high,
                    "direction": difference.direction(higher_is_better(metric)),
                }
            )
    return rows


def best_variant(variants: Mapping[str, Any], select_by: str, fallback: str) -> str:
    scored = [(name, v["overall"]["values"].get(select_by)) for name, v in variants.items()]
    scored = [(name, value) for name, value in scored if value is not None]
    if not scored:
        return fallback
    sign = 1 if higher_is_better(select_by) else -1
    # max() keeps the first of equals: ties go to the variant listed first.
    return max(scored, key=lambda nv: sign * nv[1])[0]


def golden_summary(path: Path, items: Sequence[GoldenItem], tags: Sequence[str]) -> dict[str, Any]:
    """The golden set's part of the report: which file and questions, and how many reference answers were
    cut off by the caller (answers to those questions are not compared with them)."""
    return {
        "path": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "questions": len(items),
        "tags": list(tags),
        "interrupted_references": sum(1 for i in items if i.reference_answer and i.interrupted),
    }


def build_report(
    config: EvalConfig, runs: Sequence[VariantRun], golden: Mapping[str, Any], notes: Sequence[str] = ()
) -> dict[str, Any]:
    variants: dict[str, Any] = {}
    for run in runs:
        overall, roles = summarize_by_role(run.results, config.retrieval_k)
        variants[run.name] = {
            "settings": run.variant.settings(),
            "overall": overall.to_json(),
            "roles": {role: s.to_json() for role, s in roles.items()},
            "items": [r.to_json() for r in run.results],
        }
    names = list(variants)
    baseline = config.baseline if config.baseline in variants else names[0]
    comparisons = [
        row for name in names if name != baseline for row in compare(baseline, name, variants, config)
    ]
    best = best_variant(variants, config.select_by, baseline)
    return {
        "schema": SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "golden_set": dict(golden),
        "config": {
            "baseline": baseline,
            "select_by": config.select_by,
            "retrieval_k": config.retrieval_k,
            "bootstrap": config.bootstrap.model_dump(),
        },
        "variants": variants,
        "comparisons": comparisons,
        "best_variant": best,
        "notes": list(notes),
    }


def load_report(path: Path, *, rendered: bool = False) -> dict[str, Any]:
    """A report for --baseline (only the figures are read), or, ``rendered``, one to re-gate and render
    again (--from-report), which needs everything `copilot eval` writes."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EvalInputError(f"cannot read report {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise EvalInputError(f"{path}:{exc.lineno}: not a JSON report: {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise EvalInputError(f"{path}: not a JSON report: not UTF-8 text") from exc
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise EvalInputError(f"{path}: not a `copilot eval` report (schema {SCHEMA})")
    missing = [k for k in ("created_at", "config", "golden_set") if rendered and k not in report]
    if missing:
        raise EvalInputError(f"{path}: the report has no {', '.join(missing)}; it cannot be rendered again")
    try:
        validated(RenderedReport if rendered else BaselineReport, report)
    except ValueError as exc:
        raise EvalInputError(f"{path}: {exc}") from exc
    return report


# The shape of a report, as far as it is read. Fields a later version adds are let through.
# A number: a whole one too, but not a string or true/false.
Number = StrictFloat


class _Summary(BaseModel):
    values: dict[str, Number | None] = {}


class _VariantFigures(BaseModel):
    overall: _Summary
    roles: Mapping[str, _Summary]


class _PassRate(BaseModel):
    pass_rate: Number


class _RedTeamFigures(BaseModel):
    pass_rates: Mapping[str, _PassRate] = {}


class _HumanTally(BaseModel):
    good_rate: Number | None = None


class _HumanFigures(BaseModel):
    overall: _HumanTally | None = None


class BaselineReport(BaseModel):
    """What the gate reads of any report (``scope_values``), a --baseline included. A red-team-only run
    has no variants; its report still gates (redteam:<family>) and renders."""

    variants: Mapping[str, _VariantFigures]
    best_variant: StrictStr
    redteam: _RedTeamFigures | None = None
    human: _HumanFigures | None = None


class _Item(BaseModel):
    """What ItemResult.from_json needs of each question's record, as it writes them."""

    id: StrictStr
    user: StrictStr
    role: StrictStr
    question: StrictStr
    must_refuse: StrictBool
    refused: StrictBool
    answer: StrictStr
    retrieved: list[StrictStr]
    cited: list[StrictStr]
    metrics: dict[str, Number | None]
    latency_ms: Number
    first_token_ms: Number
    search_ms: Number


class _Variant(_VariantFigures):
    items: list[_Item]


class _Bootstrap(BaseModel):
    confidence: Number
    resamples: Number
    seed: Number


class _Config(BaseModel):
    retrieval_k: Annotated[list[StrictInt], Field(min_length=1)]
    select_by: StrictStr
    baseline: StrictStr
    bootstrap: _Bootstrap | None = None


class _Comparison(BaseModel):
    candidate: StrictStr
    scope: StrictStr
    metric: StrictStr
    direction: StrictStr
    n: Number
    diff: Number
    ci_low: Number | None = None
    ci_high: Number | None = None


class _RenderedPassRate(_PassRate):
    probes: Number
    passed: Number


class _ProbeRecord(BaseModel):
    id: StrictStr
    family: StrictStr
    user: StrictStr
    passed: StrictBool
    failures: list[StrictStr]


class _RedTeam(_RedTeamFigures):
    pass_rates: Mapping[str, _RenderedPassRate] = {}
    probes: list[_ProbeRecord]


class RenderedReport(BaselineReport):
    """What rendering the report card again (--from-report) reads besides the figures."""

    created_at: StrictStr
    golden_set: dict[str, Any]
    config: _Config
    notes: list[StrictStr] = []
    comparisons: list[_Comparison] = []
    variants: Mapping[str, _Variant]
    redteam: _RedTeam | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RenderedReport:
        if self.variants and self.best_variant not in self.variants:
            raise ValueError(
                f"best_variant {self.best_variant!r} is not one of the variants: {', '.join(self.variants)}"
            )
        if self.comparisons and self.config.bootstrap is None:
            raise ValueError("config.bootstrap is missing; it must be an object")
        return self


def scope_values(report: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """What the gate judges: the best variant's figures overall (with red-team pass rates and the human
    verdicts) and per role."""
    chosen = report["variants"].get(report["best_variant"]) or {"overall": {}, "roles": {}}
    overall = dict(Summary.from_json(chosen["overall"]).values)
    for family, rates in (report.get("redteam") or {}).get("pass_rates", {}).items():
        overall[f"redteam:{family}"] = rates["pass_rate"]
    human_rate = ((report.get("human") or {}).get("overall") or {}).get("good_rate")
    if human_rate is not None:
        overall["human_good_rate"] = human_rate
    scopes = {"overall": overall}
    for role, summary in chosen["roles"].items():
        scopes[f"role:{role}"] = dict(Summary.from_json(summary).values)
    return scopes


# ---- rendering --------------------------------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


Block = tuple[str, Any]  # ("h2" | "p" | "table" | "figure" | "details", content)


def fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    if "_ms" in metric:
        return f"{value:,.0f} ms"
    return f"{value:.3f}"


def _signed(metric: str, value: float | None) -> str:
    return "–" if value is None else ("+" if value >= 0 else "−") + fmt(metric, abs(value))


def key_metrics(report: Mapping[str, Any]) -> list[str]:
    return [
        *quality_metrics(report["config"]["retrieval_k"]),
        "latency_ms_p50",
        "latency_ms_p95",
        "first_token_ms_p50",
        "search_ms_p50",
    ]


def blocks(report: Mapping[str, Any], with_figures: bool) -> list[Block]:
    """The report card as a list of blocks both renderers draw from."""
    variants = report["variants"]
    names = list(variants)
    best = report["best_variant"]
    golden = report["golden_set"]
    if variants:
        summary = (
            f"{report['created_at']} · {golden.get('questions', '?')} questions from "
            f"{golden.get('path', '?')} · variants: {', '.join(names)} · "
            f"best by {label(report['config']['select_by'])}: **{best}**"
        )
    else:
        summary = f"{report['created_at']} · red-team probes only"
    out: list[Block] = [("p", summary)]
    if golden.get("interrupted_references"):
        out.append(
            (
                "p",
                f"{golden['interrupted_references']} of the questions have a reference answer the caller "
                "cut off (interrupted): answers to them are not scored for answer similarity or token F1.",
            )
        )
    out.extend(("p", note) for note in report.get("notes", []))

    gate = report.get("gate")
    if gate:
        verdict = "PASSED" if gate["passed"] else "FAILED: a metric regressed beyond its threshold"
        against = f" against {gate['baseline_file']}" if gate.get("baseline_file") else ""
        out.append(("h2", "Regression gate"))
        out.append(("p", f"**{verdict}**{against}" + (f" (variant {best})." if best else ".")))
        out.append(
            (
                "table",
                Table(
                    ["scope", "metric", "limit", "baseline", "now", "result"],
                    [
                        [
                            c["scope"],
                            c["metric"],
                            c["limit"],
                            fmt(c["metric"], c["baseline"]),
                            fmt(c["metric"], c["current"]),
                            c["status"],
                        ]
                        for c in gate["checks"]
                    ],
                ),
            )
        )

    if variants:
        out.extend(_golden_blocks(report, with_figures))
    out.extend(_redteam_blocks(report, with_figures))
    out.extend(_human_blocks(report, with_figures))
    if variants:
        out.extend(_question_blocks(report))
    return out


def _golden_blocks(report: Mapping[str, Any], with_figures: bool) -> list[Block]:
    from services.evaluation import plots

    variants = report["variants"]
    names = list(variants)
    best = report["best_variant"]
    out: list[Block] = [("h2", "Overall")]
    out.append(
        (
            "table",
            Table(
                ["metric", *names],
                [
                    [label(m), *(fmt(m, variants[n]["overall"]["values"].get(m)) for n in names)]
                    for m in key_metrics(report)
                ],
            ),
        )
    )
    if with_figures:
        out.append(("figure", plots.overall_bars(report)))

    out.append(("h2", f"Per role ({best})"))
    roles = variants[best]["roles"]
    out.append(
        (
            "table",
            Table(
                [
                    "metric",
                    *(
                        f"{r} (n={len([i for i in variants[best]['items'] if i['role'] == r])})"
                        for r in roles
                    ),
                ],
                [
                    [label(m), *(fmt(m, roles[r]["values"].get(m)) for r in roles)]
                    for m in key_metrics(report)
                ],
            ),
        )
    )
    if with_figures and roles:
        out.append(("figure", plots.role_bars(report)))

    comparisons = report.get("comparisons", [])
    if comparisons:
        conf = report["config"]["bootstrap"]
        out.append(("h2", f"Differences against {report['config']['baseline']}"))
        out.append(
            (
                "p",
                f"Candidate minus baseline, mean over the questions both answered; {conf['confidence']:.0%} "
                f"paired bootstrap interval ({conf['resamples']} resamples, seed {conf['seed']}). Only an "
                "interval that excludes zero counts as better or worse. Per-role rows are listed when clear.",
            )
        )
        shown = [c for c in comparisons if c["scope"] == "overall" or c["direction"] != "no clear difference"]
        out.append(
            (
                "table",
                Table(
                    ["candidate", "scope", "metric", "n", "difference", "interval", "verdict"],
                    [
                        [
                            c["candidate"],
                            c["scope"],
                            label(c["metric"]),
                            str(c["n"]),
                            _signed(c["metric"], c["diff"]),
                            _interval(c),
                            c["direction"],
                        ]
                        for c in shown
                    ],
                ),
            )
        )
        if with_figures:
            out.append(("figure", plots.differences(report)))
    if with_figures:
        out.append(("figure", plots.latency(report)))
    return out


def _redteam_blocks(report: Mapping[str, Any], with_figures: bool) -> list[Block]:
    from services.evaluation import plots

    out: list[Block] = []
    redteam = report.get("redteam")
    if redteam:
        out.append(("h2", "Red team"))
        out.append(
            (
                "table",
                Table(
                    ["family", "probes", "passed", "pass rate"],
                    [
                        [f, str(r["probes"]), str(r["passed"]), f"{r['pass_rate']:.0%}"]
                        for f, r in redteam["pass_rates"].items()
                    ],
                ),
            )
        )
        failed = [p for p in redteam["probes"] if not p["passed"]]
        if failed:
            out.append(
                (
                    "table",
                    Table(
                        ["failed probe", "family", "user", "why"],
                        [[p["id"], p["family"], p["user"], "; ".join(p["failures"])] for p in failed],
                    ),
                )
            )
        if with_figures:
            out.append(("figure", plots.redteam(report)))
    return out


def _human_blocks(report: Mapping[str, Any], with_figures: bool) -> list[Block]:
    from services.evaluation import plots

    out: list[Block] = []
    human = report.get("human")
    if human:
        out.append(("h2", f"Human evaluation (batch {human.get('batch', '?')})"))
        if human.get("submitted"):
            out.append(("p", f"{len(human['submitted'])} answers sent to the monitor's review queue."))
        if human.get("overall"):
            rows = [["overall", *_tally(human["overall"])]] + [
                [role, *_tally(t)] for role, t in human.get("roles", {}).items()
            ]
            out.append(("table", Table(["scope", "items", "good", "bad", "pending", "good rate"], rows)))
            agreement = human.get("agreement") or {}
            if agreement:
                out.append(
                    (
                        "table",
                        Table(
                            ["agreement", "value", "interval"],
                            [
                                [
                                    k.replace("_", " "),
                                    f"{e['value']:.3f}",
                                    f"[{e['ci_low']:.3f}, {e['ci_high']:.3f}]",
                                ]
                                if e
                                else [k.replace("_", " "), "undefined", "–"]
                                for k, e in agreement.items()
                                if k not in ("items", "labels", "reviewers")
                            ],
                        ),
                    )
                )
            if with_figures:
                out.append(("figure", plots.human(report)))
    return out


def _question_blocks(report: Mapping[str, Any]) -> list[Block]:
    variants = report["variants"]
    best = report["best_variant"]
    out: list[Block] = [("h2", f"Questions ({best})")]
    k = max(report["config"]["retrieval_k"])
    out.append(
        (
            "details",
            Table(
                [
                    "id",
                    "role",
                    "user",
                    "refused",
                    f"hit@{k}",
                    "citation recall",
                    "supported",
                    "latency",
                    "answer",
                ],
                [
                    [
                        i["id"],
                        i["role"],
                        i["user"],
                        ("yes" if i["refused"] else "no") + (" (must)" if i["must_refuse"] else ""),
                        fmt("", i["metrics"].get(f"hit@{k}")),
                        fmt("", i["metrics"].get("citation_recall")),
                        fmt("", i["metrics"].get("supported_share")),
                        fmt("_ms", i["latency_ms"]),
                        " ".join(i["answer"].split())[:160],
                    ]
                    for i in variants[best]["items"]
                ],
            ),
        )
    )
    return out


def _interval(c: Mapping[str, Any]) -> str:
    if c["ci_low"] is None:
        return "–"
    return f"[{_signed(c['metric'], c['ci_low'])}, {_signed(c['metric'], c['ci_high'])}]"


def _tally(t: Mapping[str, Any]) -> list[str]:
    rate = t.get("good_rate")
    return [
        str(t["items"]),
        str(t["good"]),
        str(t["bad"]),
        str(t["pending"]),
        "–" if rate is None else f"{rate:.0%}",
    ]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in table.headers) + " |",
        "|" + "---|" * len(table.headers),
        *("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows),
    ]
    return "\n".join(lines)


def to_markdown(report: Mapping[str, Any]) -> str:
    parts = ["# Evaluation report card"]
    for kind, content in blocks(report, with_figures=False):
        if kind == "h2":
            parts.append(f"## {content}")
        elif kind == "p":
            parts.append(content)
        else:
            parts.append(_md_table(content))
    parts.append("Plots: see report.html beside this file.")
    return "\n\n".join(parts) + "\n"


_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
.better { color: #11772d; } .worse { color: #b00020; } .fail { color: #b00020; font-weight: bold; }
"""


def _html_cell(text: str) -> str:
    escaped = html.escape(text)
    css = {"better": "better", "worse": "worse", "fail": "fail"}.get(text)
    return f'<td class="{css}">{escaped}</td>' if css else f"<td>{escaped}</td>"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bold(text: str) -> str:
    """The Markdown paragraphs use **bold** only; the HTML page draws it the same."""
    pieces = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(pieces))


def to_html(report: Mapping[str, Any]) -> str:
    parts = ["<h1>Evaluation report card</h1>"]
    for kind, content in blocks(report, with_figures=True):
        if kind == "h2":
            parts.append(f"<h2>{html.escape(content)}</h2>")
        elif kind == "p":
            parts.append(f"<p>{_bold(content)}</p>")
        elif kind == "table":
            parts.append(_html_table(content))
        elif kind == "details":
            parts.append(f"<details><summary>every question</summary>{_html_table(content)}</details>")
        elif kind == "figure" and content is not None:
            parts.append(
                f'<img alt="{html.escape(content.alt)}" src="data:image/png;base64,{content.png_base64}">'
            )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>copilot evaluation</title>'
        f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def write_report(report: Mapping[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(to_markdown(report), encoding="utf-8")
    paths["html"].write_text(to_html(report), encoding="utf-8")
    return paths


def items_of(report: Mapping[str, Any], variant: str) -> list[ItemResult]:
    return [ItemResult.from_json(i) for i in report["variants"][variant]["items"]]
