"""Lints, renders and validates the Helm chart offline, without a helm binary or a cluster.

``python helm/check.py`` (``make helm-lint``): for the default values and each ``examples/*.yaml``
profile, Helm's own linter (helm-python-sdk, Helm's Go SDK) runs in strict mode, the chart is rendered,
and every manifest is validated strictly against the Kubernetes API schemas of each of ``KUBE_VERSIONS``
(kubernetes-validate); the chart renders only built-in kinds, so a custom resource is an error, except the
Prometheus Operator's ServiceMonitor (``UNVALIDATED_KINDS``), whose schema kubernetes-validate does not
have; tests/integration/test_helm_chart.py checks its shape. yamllint checks the values files.
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
# The Kubernetes releases the chart is linted and validated against: the oldest its Chart.yaml kubeVersion
# allows (1.27), the oldest the major clouds still maintain (1.30), and the newest kubernetes-validate has
# schemas for. An API removed or changed in between fails one of them.
KUBE_VERSIONS = ("1.27.0", "1.30.0", kubernetes_validate.latest_version())
# Custom resources kubernetes-validate has no schema for, by (apiVersion, kind); nothing else is let through.
UNVALIDATED_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
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


def lint(values: dict[str, Any] | None, kube_versions: tuple[str, ...] = KUBE_VERSIONS) -> list[str]:
    """Helm's lint, once per Kubernetes version (its deprecated-API rule depends on it)."""
    found = []
    for version in kube_versions:
        report = helm.lint(CHART, values, strict=True, with_subcharts=True, kube_version=f"v{version}")
        found += [
            f"helm lint (Kubernetes {version}): {m['path']}: {m['error']}"
            for m in report.get("messages", [])
            if m["severity"] >= 2
        ]
        found += [f"helm lint (Kubernetes {version}): {e}" for e in report.get("errors") or []]
    return found


def kube_version_problems(
    chart_yaml: Path = CHART / "Chart.yaml", kube_versions: tuple[str, ...] = KUBE_VERSIONS
) -> list[str]:
    """Helm's lint does not hold the versions it is given to Chart.yaml's kubeVersion: each validated version
    must be one the chart admits, and the oldest it admits must be validated, or that claim goes unchecked."""
    constraint = str(yaml.safe_load(chart_yaml.read_text()).get("kubeVersion", ""))
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)(-0)?", constraint.strip())
    if match is None:
        return [f"Chart.yaml: kubeVersion {constraint!r} is not '>=X.Y.Z-0', the form this check reads"]
    oldest = tuple(int(part) for part in match.groups()[:3])
    versions = {version: tuple(int(part) for part in version.split(".")) for version in kube_versions}
    problems = [
        f"Kubernetes {version} is older than Chart.yaml's kubeVersion {constraint}"
        for version, parsed in versions.items()
        if parsed < oldest
    ]
    if oldest not in versions.values():
        problems.append(
            f"Chart.yaml's kubeVersion {constraint} admits {'.'.join(map(str, oldest))}, not validated"
        )
    return problems


def validate(manifest: Manifest, kube_versions: tuple[str, ...] = KUBE_VERSIONS) -> list[str]:
    """Strict schema validation against each version: unknown fields and wrong types are errors."""
    where = f"{manifest.kind}/{manifest.name} ({manifest.template})"
    doc = manifest.doc
    if (doc["apiVersion"], doc["kind"]) in UNVALIDATED_KINDS:
        return []
    errors = []
    for version in kube_versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"{where}: Kubernetes {version}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: no Kubernetes {version} schema for {doc['apiVersion']} {doc['kind']}")
    return errors


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
    lint_errors = (
        kube_version_problems()
        + yamllint(values_files)
        + [e for path in chart_values for e in value_docs(path)]
    )
    reports = [check(path) for path in profiles()]
    table = Table(
        title=f"helm chart {CHART.name}: lint, render, validate "
        f"(Kubernetes {', '.join(KUBE_VERSIONS)}, strict)"
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
