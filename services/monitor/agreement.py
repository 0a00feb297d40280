"""Inter-reviewer agreement on nominal labels: percent agreement, Cohen's kappa, Fleiss' kappa,
Krippendorff's alpha and Gwet's AC1, each with a confidence interval.

Ratings come as one mapping per item (unit) from reviewer to category. Cohen's and Fleiss' kappa come from
statsmodels and Krippendorff's alpha from the krippendorff package; Gwet's AC1 has no well-kept Python
implementation, so it follows Gwet (2014), Handbook of Inter-Rater Reliability, 4th ed., the formulas for
several raters with missing ratings. The unit tests check every coefficient against published examples.

Intervals: Cohen's kappa uses its asymptotic standard error (Fleiss, Cohen and Everitt 1969, as statsmodels
computes it); the others a percentile bootstrap over items with a fixed seed, so a report is reproducible.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

Ratings = Sequence[Mapping[str, str]]
"""One mapping per item from reviewer to the category they chose."""

Counts = NDArray[np.float64]
"""Items x categories: how many reviewers put each item in each category."""

DEFAULT_RESAMPLES = 1000
BOOTSTRAP_SEED = 20_260_101


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class AgreementFigures:
    """Coefficients over one set of items; None where a coefficient is undefined for the data."""

    items: int
    labels: int
    percent_agreement: Estimate | None
    cohen_kappa: Estimate | None
    fleiss_kappa: Estimate | None
    krippendorff_alpha: Estimate | None
    gwet_ac1: Estimate | None


def count_table(ratings: Ratings, categories: Sequence[str] | None = None) -> Counts:
    """The items x categories count table; categories default to those used, sorted."""
    used = categories if categories is not None else sorted({c for item in ratings for c in item.values()})
    column = {category: j for j, category in enumerate(used)}
    table = np.zeros((len(ratings), len(used)))
    for i, item in enumerate(ratings):
        for category in item.values():
            table[i, column[category]] += 1
    return table


# --- the coefficients on a count table ----------------------------------------------------------------------


def _inter_rater() -> Any:
    # statsmodels pulls in scipy and pandas (seconds of start-up); only agreement figures need it, so the
    # monitor imports it on first use instead of delaying every start.
    from statsmodels.stats import inter_rater

    return inter_rater


def percent_agreement(counts: Counts) -> float | None:
    """Mean over items with two or more ratings of the share of rating pairs that agree."""
    n = counts.sum(axis=1)
    rated = n >= 2
    if not rated.any():
        return None
    agreeing = (counts[rated] * (counts[rated] - 1)).sum(axis=1)
    return float(np.mean(agreeing / (n[rated] * (n[rated] - 1))))


def fleiss_kappa(counts: Counts) -> float | None:
    """Fleiss' kappa; it needs the same number of ratings on every item."""
    n = counts.sum(axis=1)
    if len(n) < 2 or n[0] < 2 or not np.all(n == n[0]):
        return None
    shares = counts.sum(axis=0) / counts.sum()
    if math.isclose(float(np.sum(shares**2)), 1.0):
        return None
    return float(_inter_rater().fleiss_kappa(counts, method="fleiss"))


def krippendorff_alpha(counts: Counts) -> float | None:
    """Nominal alpha; items with one rating are not pairable and drop out, as alpha defines."""
    pairable = counts[counts.sum(axis=1) >= 2]
    if len(pairable) == 0 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    import krippendorff

    return float(krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal"))


def gwet_ac1(counts: Counts) -> float | None:
    """Gwet's AC1 for any number of raters and missing ratings, over the categories of the table.

    pa averages pair agreement over items with two or more ratings; chance agreement is
    pe = sum_k pi_k (1 - pi_k) / (q - 1), with pi_k the mean over all rated items of the share of the
    item's ratings in category k. Unlike kappa it stays meaningful when one category dominates."""
    n = counts.sum(axis=1)
    categories = counts.shape[1]
    pa = percent_agreement(counts)
    if pa is None or categories < 2:
        return None
    rated = n >= 1
    pi = (counts[rated] / n[rated, None]).mean(axis=0)
    pe = float(np.sum(pi * (1 - pi)) / (categories - 1))
    if math.isclose(pe, 1.0):
        return None
    return (pa - pe) / (1 - pe)


def cohen_kappa(pairs: Sequence[tuple[str, str]], confidence: float) -> Estimate | None:
    """Cohen's kappa of two reviewers' labels on the same items, with its asymptotic interval."""
    if len(pairs) < 2:
        return None
    categories = sorted({c for pair in pairs for c in pair})
    index = {category: j for j, category in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    for first, second in pairs:
        table[index[first], index[second]] += 1
    expected = float(table.sum(axis=1) @ table.sum(axis=0)) / table.sum() ** 2
    if len(categories) < 2 or math.isclose(expected, 1.0):
        return None
    result = _inter_rater().cohens_kappa(table)
    z = _z(confidence)
    kappa, spread = float(result.kappa), z * float(result.std_kappa)
    return Estimate(kappa, max(-1.0, kappa - spread), min(1.0, kappa + spread))


# --- intervals and the figures of one scope -----------------------------------------------------------------


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def bootstrap(
    statistic: Callable[[Counts], float | None],
    counts: Counts,
    resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> Estimate | None:
    """The statistic with a percentile interval from resampling items with replacement. Resamples where the
    statistic is undefined (every label the same, say) are left out of the interval."""
    value = statistic(counts)
    if value is None:
        return None
    draws = rng.integers(0, len(counts), size=(resamples, len(counts)))
    values = [v for row in draws if (v := statistic(counts[row])) is not None and not math.isnan(v)]
    if not values:
        return Estimate(value, value, value)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Estimate(value, float(low), float(high))


def figures(
    ratings: Ratings,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    pair: tuple[str, str] | None = None,
) -> AgreementFigures:
    """Every coefficient over the items; Cohen's kappa only for a reviewer pair, whose items are those both
    labelled. Fleiss' kappa uses the items with the most common number of ratings (two or more), since it
    needs the same number on each."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    counts = count_table(ratings)
    per_item = counts.sum(axis=1)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    common = Counter(int(n) for n in per_item if n >= 2).most_common(1)
    fleiss_counts = counts[per_item == common[0][0]] if common else counts[:0]
    kappa = None
    if pair is not None:
        kappa = cohen_kappa([(item[pair[0]], item[pair[1]]) for item in ratings], confidence)
    return AgreementFigures(
        items=int(np.count_nonzero(per_item >= 2)),
        labels=int(per_item[per_item >= 2].sum()),
        percent_agreement=bootstrap(percent_agreement, counts, resamples, confidence, rng),
        cohen_kappa=kappa,
        fleiss_kappa=bootstrap(fleiss_kappa, fleiss_counts, resamples, confidence, rng),
        krippendorff_alpha=bootstrap(krippendorff_alpha, counts, resamples, confidence, rng),
        gwet_ac1=bootstrap(gwet_ac1, counts, resamples, confidence, rng),
    )
