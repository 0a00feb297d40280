"""Lints, renders and validates the Helm chart offline, without a helm binary or a cluster.

``python helm/check.py`` (``make helm-lint``): for the default values and each ``examples/*.yaml``
profile, Helm's own linter (helm-python-sdk, Helm's Go SDK) runs in strict mode, the chart is rendered,
and every manifest is validated strictly against the Kubernetes API schemas of ``KUBE_VERSION``
(kubernetes-validate); the chart renders only built-in kinds, so a custom resource is an error. yamllint
checks the values files.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml
from rich.console import Console
from rich.table import Table
from yamllint import config as yamllint_config
from yamllint import linter as yamllint_linter

CHART = Path(__file__).resolve().parent / "copilot"
EXAMPLES = CHART / "examples"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion allows 1.27+; 1.30 is the oldest
# release still maintained by the major clouds).
KUBE_VERSION = "1.30.0"
RELEASE = "copilot"
NAMESPACE = "copilot"
YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 160}
  document-start: disable
  truthy: {check-keys: false}
  comments: {min-spaces-from-content: 1}
"""


@dataclass
class Report:
    profile: str
    manifests: int = 0
    kinds: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def profiles() -> list[Path | None]:
    """None stands for the chart's default values."""
    return [None, *sorted(EXAMPLES.glob("*.yaml"))]


def load_values(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a values file must hold a mapping")
    return values


@dataclass(frozen=True)
class Manifest:
    template: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


def render(values: dict[str, Any] | None) -> list[Manifest]:
    """Every rendered Kubernetes object (helm test hooks included), as Helm would send them."""
    rendered = helm.Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [
        Manifest(template, doc)
        for template, text in sorted(rendered.items())
        if template.endswith((".yaml", ".yml"))  # not NOTES.txt
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def lint(values: dict[str, Any] | None) -> list[str]:
    report = helm.lint(CHART, values, strict=True, with_subcharts=True, kube_version=f"v{KUBE_VERSION}")
    found = [
        f"helm lint: {m['path']}: {m['error']}" for m in report.get("messages", []) if m["severity"] >= 2
    ]
    return found + [f"helm lint: {e}" for e in report.get("errors") or []]


def validate(manifest: Manifest) -> list[str]:
    """Strict schema validation: unknown fields and wrong types are errors."""
    where = f"{manifest.kind}/{manifest.name} ({manifest.template})"
    doc = manifest.doc
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path)
        return [f"{where}: {path}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{where}: no Kubernetes {KUBE_VERSION} schema for {doc['apiVersion']} {doc['kind']}"]
    return []


def yamllint(paths: list[Path]) -> list[str]:
    conf = yamllint_config.YamlLintConfig(YAMLLINT_CONFIG)
    return [
        f"yamllint: {path.relative_to(CHART.parent)}:{problem.line}:{problem.column}: {problem.message}"
        for path in paths
        for problem in yamllint_linter.run(path.read_text(), conf, str(path))
    ]


def value_docs(values_file: Path) -> list[str]:
    """Bitnami-style documentation: every key has a ``## @param`` (or sits under a documented mapping),
    and every ``@param`` names a key that exists."""
    text = values_file.read_text()
    documented = set(re.findall(r"^## @param ([^ ]+) ", text, re.MULTILINE))
    paths: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        paths.add(prefix)
        if isinstance(node, dict) and node and prefix not in documented:
            for key, child in node.items():
                walk(child, f"{prefix}.{key}" if prefix else str(key))

    walk(yaml.safe_load(text), "")
    paths.discard("")
    leaves = {p for p in paths if not any(q.startswith(p + ".") for q in paths)}
    problems = [f"{values_file.name}: {p} has no '## @param'" for p in sorted(leaves - documented)]
    return problems + [
        f"{values_file.name}: '## @param {p}' names no key" for p in sorted(documented - paths)
    ]


def check(path: Path | None) -> Report:
    report = Report("default values" if path is None else f"examples/{path.name}")
    values = load_values(path)
    report.errors += lint(values)
    try:
        manifests = render(values)
    except helm.HelmError as error:
        report.errors.append(f"render: {error}")
        return report
    report.manifests = len(manifests)
    report.kinds = {m.kind for m in manifests}
    for manifest in manifests:
        report.errors += validate(manifest)
    return report


def main() -> int:
    console = Console()
    chart_values = [CHART / "values.yaml", CHART / "charts" / "qdrant" / "values.yaml"]
    values_files = [*chart_values, *sorted(EXAMPLES.glob("*.yaml"))]
    lint_errors = yamllint(values_files) + [e for path in chart_values for e in value_docs(path)]
    reports = [check(path) for path in profiles()]
    table = Table(
        title=f"helm chart {CHART.name}: lint, render, validate (Kubernetes {KUBE_VERSION}, strict)"
    )
    table.add_column("values")
    table.add_column("manifests", justify="right")
    table.add_column("kinds")
    table.add_column("errors", justify="right")
    for report in reports:
        table.add_row(
            report.profile, str(report.manifests), ", ".join(sorted(report.kinds)), str(len(report.errors))
        )
    console.print(table)
    console.print(f"yamllint and @param docs: {len(values_files)} values files, {len(lint_errors)} problems")
    errors = lint_errors + [f"{r.profile}: {e}" for r in reports for e in r.errors]
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
