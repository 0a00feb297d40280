"""``copilot eval``: run golden sets and red-team probes, compare variants, gate regressions, exchange
samples and cases with the monitor's review queue. Exit 0 when the gate passes, 1 when a metric
regressed beyond its threshold, 2 on bad input or an unreachable service."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parser must stay cheap to build: the heavy modules load only when eval runs
    from rich.console import Console

    from copilot.launcher import LauncherSettings
    from services.evaluation.client import CopilotApi, Endpoints
    from services.evaluation.golden import GoldenItem
    from services.evaluation.redteam import Probe
    from services.evaluation.runner import AnswerCache, VariantRun
    from services.evaluation.settings import EvalSettings
    from services.evaluation.variants import EvalConfig, Variant

SAMPLE_EVAL = Path(__file__).resolve().parents[2] / "sample" / "eval"
DEFAULT_SET = SAMPLE_EVAL / "golden.jsonl"
DEFAULT_VARIANTS = SAMPLE_EVAL / "variants.yaml"
DEFAULT_REDTEAM = SAMPLE_EVAL / "redteam.jsonl"
DEFAULT_CORPUS = SAMPLE_EVAL.parent / "corpus"
_MONITOR = "monitor"  # import from the monitor's ExportAdjudicated instead of a file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", type=Path, default=None, help=f"golden set JSONL (default {DEFAULT_SET.name})")
    p.add_argument("--variants", type=Path, default=DEFAULT_VARIANTS, help="variants and gate YAML")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="variant to run (repeat to compare); default the baseline",
    )
    p.add_argument("--tag", action="append", default=[], help="only questions and probes with this tag")
    p.add_argument("--baseline", type=Path, help="report JSON of the version in production; gate against it")
    p.add_argument("--out", type=Path, help="folder for report.json, report.md and report.html")
    p.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS, help="ingested into a server_env variant's stack"
    )
    p.add_argument(
        "--redteam",
        nargs="?",
        type=Path,
        const=DEFAULT_REDTEAM,
        help="run the red-team suite (JSONL); the golden set too when --set is given",
    )
    p.add_argument("--human-sample", type=int, default=0, help="send this many answers to human review")
    p.add_argument(
        "--human-batch", default="", help="review batch to send samples to, or to fold verdicts from"
    )
    p.add_argument(
        "--human-labels", type=int, default=0, help="reviewers each sample needs (default: the monitor's)"
    )
    p.add_argument("--from-report", type=Path, help="re-gate and re-render a report instead of running")
    p.add_argument(
        "--import-golden",
        nargs="?",
        const=_MONITOR,
        metavar="EXPORT.jsonl",
        help="append adjudicated review cases (file or, without one, the monitor) to the golden set",
    )
    p.add_argument(
        "--import-probes",
        nargs="?",
        const=_MONITOR,
        metavar="EXPORT.jsonl",
        help="append confirmed prompt_injection, acl_anomaly and pii flags (file or the monitor) to the "
        "red-team suite",
    )
    p.add_argument("--as-user", default="bob", help="who asks imported cases whose role is unknown")
    p.add_argument("--json", action="store_true", help="print the report JSON to stdout")


def run(args: argparse.Namespace, launcher: LauncherSettings) -> int:
    from rich.console import Console

    from services.evaluation.client import ApiError
    from services.evaluation.golden import EvalInputError
    from services.evaluation.settings import EvalSettings

    err = Console(stderr=True)
    try:
        return _run(args, launcher, EvalSettings(), err)
    except (EvalInputError, ApiError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2


def _api(settings: EvalSettings, endpoints: Endpoints) -> CopilotApi:
    from services.evaluation.client import CopilotApi, Tokens, load_credentials

    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    tokens = Tokens(
        endpoints.issuer, load_credentials(endpoints.credentials_file), settings.client_id, secret
    )
    return CopilotApi(endpoints, tokens, settings)


def _run(args: argparse.Namespace, launcher: LauncherSettings, settings: EvalSettings, err: Console) -> int:
    from services.evaluation.client import resolve_endpoints
    from services.evaluation.gate import check_rule_names
    from services.evaluation.golden import EvalInputError, load_golden
    from services.evaluation.redteam import load_probes
    from services.evaluation.report import golden_summary, load_report
    from services.evaluation.variants import load_config

    if args.human_sample < 0 or args.human_labels < 0:
        raise EvalInputError("--human-sample and --human-labels must be positive")
    if args.human_sample and not args.human_batch:
        raise EvalInputError("--human-sample needs --human-batch NAME to file the samples under")
    # Without the sample variants file (an installed copy), the built-in defaults: one variant, no gate.
    missing_default = args.variants == DEFAULT_VARIANTS and not DEFAULT_VARIANTS.exists()
    config = load_config(None if missing_default else args.variants)
    check_rule_names(config.gate, config.retrieval_k)
    baseline = load_report(args.baseline) if args.baseline else None

    if args.import_golden or args.import_probes:
        return _import(args, launcher, settings, err)
    if args.from_report:
        if args.human_sample:
            raise EvalInputError(
                "--human-sample sends answers of a run; it cannot be used with --from-report"
            )
        report = load_report(args.from_report, rendered=True)
        out = args.out or args.from_report.parent
        reviewing = _api(settings, resolve_endpoints(settings, launcher.home)) if args.human_batch else None
        return _finish(report, config, baseline, args, reviewing, settings, out, err, runs=[])

    chosen = config.pick(args.variant)
    # Every input is read before the first question is asked: a typo fails now, not an hour in.
    golden_path: Path = args.set or DEFAULT_SET
    items = load_golden(golden_path, args.tag) if args.set is not None or args.redteam is None else []
    probes = load_probes(args.redteam, args.tag) if args.redteam is not None else []
    api = _api(settings, resolve_endpoints(settings, launcher.home))
    runs: list[VariantRun] = []
    golden_info: dict[str, Any] = {}
    notes: list[str] = []
    if items:
        runs, notes = _run_golden(args, api, items, config, chosen, settings, err)
        golden_info = golden_summary(golden_path, items, args.tag)
    report = _new_report(config, runs, golden_info, notes)
    if probes:
        _run_redteam(args, api, probes, chosen, settings, report, err)
    out = args.out or settings.reports_dir / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return _finish(report, config, baseline, args, api, settings, out, err, runs)


def _new_report(
    config: EvalConfig, runs: list[VariantRun], golden_info: dict[str, Any], notes: list[str]
) -> dict[str, Any]:
    from services.evaluation.report import SCHEMA, build_report

    if runs:
        return build_report(config, runs, golden_info, notes)
    # A red-team-only run: no golden figures, the same report shape.
    return {
        "schema": SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "golden_set": {},
        "config": {
            "baseline": config.baseline,
            "select_by": config.select_by,
            "retrieval_k": config.retrieval_k,
            "bootstrap": config.bootstrap.model_dump(),
        },
        "variants": {},
        "comparisons": [],
        "best_variant": "",
        "notes": notes,
    }


def _run_golden(
    args: argparse.Namespace,
    api: CopilotApi,
    items: Sequence[GoldenItem],
    config: EvalConfig,
    chosen: Sequence[tuple[str, Variant]],
    settings: EvalSettings,
    err: Console,
) -> tuple[list[VariantRun], list[str]]:
    from services.evaluation.runner import AnswerCache, make_similarity

    needs_similarity = any(i.scores_answer_text for i in items)
    similarity = make_similarity(settings.embedding_cache_dir) if needs_similarity else None
    cache = AnswerCache()
    runs: list[VariantRun] = []
    notes: list[str] = []
    for name, variant in chosen:
        runs.append(_run_one(args, api, items, name, variant, config, cache, similarity, settings, err))
        reused = sum(r.reused_answer for r in runs[-1].results)
        if reused:
            notes.append(
                f"{name}: {reused} answers shared with an earlier variant (the same answer request: "
                "model, top-k, search mode and reranking; answers are deterministic)"
            )
    return runs, notes


def _run_one(
    args: argparse.Namespace,
    api: CopilotApi,
    items: Sequence[GoldenItem],
    name: str,
    variant: Variant,
    config: EvalConfig,
    cache: AnswerCache,
    similarity: Any,
    settings: EvalSettings,
    err: Console,
) -> VariantRun:
    from services.evaluation.client import Endpoints
    from services.evaluation.runner import run_variant
    from services.evaluation.stacks import own_stack

    if not variant.needs_own_stack:
        return run_variant(api, items, name, variant, config.retrieval_k, cache, similarity, err)
    err.print(f"[dim]{name}: starting a stack with {variant.server_env} and ingesting {args.corpus}[/dim]")
    with own_stack(variant.server_env, args.corpus, settings.reports_dir / "stacks") as stack:
        endpoints = Endpoints(
            retrieval=stack.endpoint("retrieval"),
            generation=stack.endpoint("generation"),
            monitor=stack.endpoint("monitor"),
            ingest=stack.endpoint("ingest"),
            issuer=stack.issuer,
            credentials_file=Path(stack.users_file),
        )
        return run_variant(
            _api(settings, endpoints), items, name, variant, config.retrieval_k, cache, similarity, err
        )


def _run_redteam(
    args: argparse.Namespace,
    api: CopilotApi,
    probes: Sequence[Probe],
    chosen: Sequence[tuple[str, Variant]],
    settings: EvalSettings,
    report: dict[str, Any],
    err: Console,
) -> None:
    from services.evaluation.redteam import pass_rates, run_probes
    from services.evaluation.variants import Variant

    # Probes go to the running stack; a variant that needs its own stack is probed with the defaults.
    name, variant = next(((n, v) for n, v in chosen if not v.needs_own_stack), ("default", Variant()))
    results = run_probes(api, probes, args.redteam.parent, variant, settings.operator_user, err)
    report["redteam"] = {
        "suite": str(args.redteam),
        "variant": name,
        "pass_rates": pass_rates(results),
        "probes": [r.to_json() for r in results],
    }


def _finish(
    report: dict[str, Any],
    config: EvalConfig,
    baseline: dict[str, Any] | None,
    args: argparse.Namespace,
    api: CopilotApi | None,
    settings: EvalSettings,
    out: Path,
    err: Console,
    runs: Sequence[VariantRun],
) -> int:
    import json

    from services.evaluation.gate import evaluate_gate, gate_passed
    from services.evaluation.report import scope_values, write_report

    if args.human_batch and api is not None:
        _human(args, api, settings, report, runs, config.bootstrap.seed, err)
    checks = evaluate_gate(config.gate, scope_values(report), scope_values(baseline) if baseline else None)
    passed = gate_passed(checks)
    report["gate"] = {
        "baseline_file": str(args.baseline) if args.baseline else "",
        "passed": passed,
        "checks": [c.to_json() for c in checks],
    }
    paths = write_report(report, out)
    _print_summary(report, err)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    err.print(f"report: {paths['html']} (also {paths['markdown'].name}, {paths['json'].name})")
    if not passed:
        failed = [f"{c.metric} ({c.scope}, {c.limit})" for c in checks if c.status == "fail"]
        err.print(f"[red]gate failed:[/red] {', '.join(failed)}")
        return 1
    return 0


def _human(
    args: argparse.Namespace,
    api: CopilotApi,
    settings: EvalSettings,
    report: dict[str, Any],
    runs: Sequence[VariantRun],
    seed: int,
    err: Console,
) -> None:
    from services.evaluation.golden import EvalInputError
    from services.evaluation.human import evaluation_samples, fold_verdicts, pick_samples
    from services.evaluation.report import items_of

    batch = args.human_batch
    best = report.get("best_variant", "")
    if args.human_sample:
        run = next((r for r in runs if r.name == best), None)
        if run is None:
            raise EvalInputError("--human-sample needs a golden-set run to sample answers from")
        chosen = pick_samples(run.results, args.human_sample, seed)
        samples = evaluation_samples(run, chosen, batch)
        ids = api.submit_for_review(settings.operator_user, samples, args.human_labels)
        report["human"] = {"batch": batch, "submitted": ids}
        err.print(f"sent {len(ids)} answers of {best} to the review queue as batch {batch!r}")
        return
    items = api.review_items(settings.operator_user, batch)
    agreements = api.agreement(settings.operator_user, batch)
    results = items_of(report, best) if best else []
    report["human"] = fold_verdicts(batch, items, agreements, results)
    tally = report["human"]["overall"]
    err.print(f"batch {batch!r}: {tally['good']} good, {tally['bad']} bad, {tally['pending']} pending")


def _import(
    args: argparse.Namespace, launcher: LauncherSettings, settings: EvalSettings, err: Console
) -> int:
    from services.evaluation.client import resolve_endpoints
    from services.evaluation.golden import (
        EvalInputError,
        ReviewCase,
        append_jsonl,
        golden_from_cases,
        load_golden,
        read_jsonl,
    )
    from services.evaluation.redteam import PROBE_FAMILIES, load_probes, probes_from_cases
    from services.evaluation.shape import validated

    def cases(source: str, detectors: Sequence[str]) -> list[dict[str, Any]]:
        if source == _MONITOR:
            api = _api(settings, resolve_endpoints(settings, launcher.home))
            return [c for d in detectors for c in api.export_adjudicated(settings.operator_user, detector=d)]
        read: list[dict[str, Any]] = []
        for number, raw in read_jsonl(Path(source)):
            try:
                validated(ReviewCase, raw)
            except ValueError as exc:
                raise EvalInputError(f"{source}:{number}: {exc}") from exc
            read.append(raw)
        return read

    if args.import_golden:
        target: Path = args.set or DEFAULT_SET
        existing = load_golden(target) if target.exists() else []
        items = golden_from_cases(cases(args.import_golden, [""]), args.as_user, (i.id for i in existing))
        append_jsonl(target, [i.to_json() for i in items])
        err.print(f"added {len(items)} questions to {target}")
    if args.import_probes:
        suite: Path = args.redteam or DEFAULT_REDTEAM
        probes = probes_from_cases(
            cases(args.import_probes, list(PROBE_FAMILIES)), load_probes(suite), args.as_user
        )
        append_jsonl(suite, [p.to_json() for p in probes])
        err.print(f"added {len(probes)} probes to {suite}")
    return 0


def _print_summary(report: dict[str, Any], err: Console) -> None:
    from rich.table import Table

    from services.evaluation.report import fmt, key_metrics
    from services.evaluation.scoring import label

    variants = report["variants"]
    if variants:
        table = Table("metric", *variants, title=f"best: {report['best_variant']}")
        for metric in key_metrics(report):
            table.add_row(
                label(metric), *(fmt(metric, v["overall"]["values"].get(metric)) for v in variants.values())
            )
        err.print(table)
    for row in report.get("comparisons", []):
        if row["scope"] == "overall" and row["direction"] != "no clear difference":
            err.print(f"{row['candidate']}: {label(row['metric'])} {row['direction']} ({row['diff']:+.3f})")
    redteam = report.get("redteam")
    if redteam:
        rates = ", ".join(f"{f} {r['passed']}/{r['probes']}" for f, r in redteam["pass_rates"].items())
        err.print(f"red team: {rates}")
