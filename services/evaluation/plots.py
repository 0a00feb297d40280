"""The report card's plots, drawn with matplotlib off-screen and embedded as base64 PNG."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402

from services.evaluation.scoring import label, quality_metrics  # noqa: E402

_COLORS = {"better": "#11772d", "worse": "#b00020", "no clear difference": "#888888"}


@dataclass(frozen=True)
class Figure:
    png_base64: str
    alt: str


def _encode(fig: MplFigure, alt: str) -> Figure:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return Figure(base64.b64encode(buffer.getvalue()).decode("ascii"), alt)


def _quality(report: Mapping[str, Any]) -> list[str]:
    return quality_metrics(report["config"]["retrieval_k"])


def _grouped_bars(
    metrics: Sequence[str], series: Mapping[str, Mapping[str, float]], title: str, alt: str
) -> Figure | None:
    shown = [m for m in metrics if any(m in values for values in series.values())]
    if not shown or not series:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.6))
    width = 0.8 / len(series)
    x = np.arange(len(shown))
    for i, (name, values) in enumerate(series.items()):
        heights = [values.get(m, np.nan) for m in shown]
        ax.bar(x + i * width - 0.4 + width / 2, heights, width, label=name)
    ax.set_xticks(x, [label(m) for m in shown], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=min(len(series), 4))
    ax.grid(axis="y", alpha=0.3)
    return _encode(fig, alt)


def overall_bars(report: Mapping[str, Any]) -> Figure | None:
    series = {name: v["overall"]["values"] for name, v in report["variants"].items()}
    return _grouped_bars(_quality(report), series, "Overall, per variant", "quality metrics per variant")


def role_bars(report: Mapping[str, Any]) -> Figure | None:
    best = report["best_variant"]
    series = {role: s["values"] for role, s in report["variants"][best]["roles"].items()}
    return _grouped_bars(_quality(report), series, f"Per role ({best})", "quality metrics per role")


def differences(report: Mapping[str, Any]) -> Figure | None:
    """One row per candidate and metric: the mean difference and its interval, coloured by verdict."""
    rows = [
        c for c in report.get("comparisons", []) if c["scope"] == "overall" and c["metric"] != "latency_ms"
    ]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    for yi, c in zip(y, rows, strict=True):
        color = _COLORS[c["direction"]]
        if c["ci_low"] is not None:
            ax.plot([c["ci_low"], c["ci_high"]], [yi, yi], color=color, linewidth=2)
        ax.plot([c["diff"]], [yi], "o", color=color)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{c['candidate']}: {label(c['metric'])}" for c in rows], fontsize=8)
    ax.set_xlabel(f"difference against {report['config']['baseline']} (green better, red worse)")
    ax.grid(axis="x", alpha=0.3)
    return _encode(fig, "variant differences with bootstrap intervals")


def latency(report: Mapping[str, Any]) -> Figure | None:
    names = list(report["variants"])
    data = [[i["latency_ms"] / 1000 for i in report["variants"][n]["items"]] for n in names]
    if not any(data):
        return None
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    ax.boxplot(data, orientation="horizontal", tick_labels=names)
    ax.set_xlabel("answer latency (s)")
    ax.set_title("Answer latency per variant")
    ax.grid(axis="x", alpha=0.3)
    return _encode(fig, "answer latency per variant")


def redteam(report: Mapping[str, Any]) -> Figure | None:
    rates = report["redteam"]["pass_rates"]
    families = [f for f in rates if f != "all"]
    if not families:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(families) + 1.2))
    values = [rates[f]["pass_rate"] for f in families]
    ax.barh(families, values, color=["#11772d" if v == 1 else "#b00020" for v in values])
    ax.set_xlim(0, 1)
    ax.set_xlabel("pass rate")
    ax.set_title("Red-team probes per attack family")
    return _encode(fig, "red-team pass rate per family")


def human(report: Mapping[str, Any]) -> Figure | None:
    scopes = {"overall": report["human"]["overall"], **report["human"].get("roles", {})}
    names = list(scopes)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    left = np.zeros(len(names))
    for verdict, color in (("good", "#11772d"), ("bad", "#b00020"), ("pending", "#bbbbbb")):
        counts = np.array([scopes[n][verdict] for n in names], dtype=float)
        ax.barh(names, counts, left=left, color=color, label=verdict)
        left += counts
    ax.set_xlabel("answers")
    ax.legend(fontsize=8)
    ax.set_title("Human verdicts")
    return _encode(fig, "human verdicts per role")
