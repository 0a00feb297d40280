"""Agreement coefficients against published worked examples. Each reference number names its source."""

from __future__ import annotations

import numpy as np
import pytest

from services.monitor import agreement

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the nominal example with missing
# data: 4 observers (rows) x 12 units (columns), None = no value. Published alpha (nominal) = 0.743.
# The same data is irrCAC's cac.raw4raters (Gwet 2014, Handbook of Inter-Rater Reliability, 4th ed.); the
# irrCAC README lists for it percent agreement 0.8181818, Gwet's AC1 0.77544 (pe 0.1903212) and
# Krippendorff's alpha 0.74342.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]

# Fleiss (1971), "Measuring nominal scale agreement among many raters", Psychological Bulletin 76:378-382:
# 30 patients, 6 psychiatrists, 5 diagnoses (R package irr, dataset `diagnoses`). Published kappa = 0.430
# (irr::kappam.fleiss gives 0.4302445).
FLEISS_1971 = [
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
]  # fmt: skip

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories (counts per category).
# Published P-bar = 0.378, P-bar-e = 0.213, kappa = 0.210.
WIKIPEDIA_FLEISS = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip

# Gwet (2014), Handbook of Inter-Rater Reliability, 4th ed.: 15 psychiatric patients rated by 6 raters into 5
# categories (irrCAC dataset distrib.6raters). irrCAC README: Gwet's AC1 0.4448007 (pa 0.5511111,
# pe 0.1914815), Fleiss' kappa 0.4139265, Krippendorff's alpha 0.4204384.
GWET_6_RATERS = [
    [0, 0, 0, 6, 0], [0, 3, 0, 0, 3], [0, 1, 4, 0, 1], [0, 0, 0, 0, 6], [0, 3, 0, 3, 0],
    [2, 0, 4, 0, 0], [0, 0, 4, 0, 2], [2, 0, 3, 1, 0], [2, 0, 0, 4, 0], [0, 0, 0, 0, 6],
    [1, 0, 0, 5, 0], [1, 1, 0, 4, 0], [0, 3, 3, 0, 0], [1, 0, 0, 5, 0], [0, 2, 0, 3, 1],
]  # fmt: skip

# Gwet (2014) / irrCAC dataset cont3x3abstractors: two abstractors classifying 100 pregnancies as Ectopic,
# AIU or NIU (rows: abstractor 1, columns: abstractor 2). irrCAC README: Cohen's kappa 0.7964094 with
# standard error 0.05891072 and 95% interval (0.68, 0.913); Gwet's AC1 0.8493305; Krippendorff's alpha
# 0.7972585; percent agreement 0.89.
ABSTRACTORS = [[13, 0, 0], [0, 20, 7], [0, 4, 56]]

# Wikipedia, "Cohen's kappa", worked example: 50 grant proposals read by A and B; both yes 20, A yes B no 5,
# A no B yes 10, both no 15. Published p_o = 0.7, p_e = 0.5, kappa = 0.4.
WIKIPEDIA_COHEN = [[20, 5], [10, 15]]


def raw_ratings(rows_by_rater: list[list[int | None]]) -> list[dict[str, str]]:
    """Raters x units with None for missing, as one reviewer -> category mapping per unit."""
    units = len(rows_by_rater[0])
    return [
        {f"r{r}": str(row[u]) for r, row in enumerate(rows_by_rater) if row[u] is not None}
        for u in range(units)
    ]


def pairs_from_table(table: list[list[int]]) -> list[tuple[str, str]]:
    return [(f"c{i}", f"c{j}") for i, row in enumerate(table) for j, n in enumerate(row) for _ in range(n)]


def counts_of(units: list[list[int]]) -> np.ndarray:
    return agreement.count_table([{f"r{r}": str(v) for r, v in enumerate(unit)} for unit in units])


def test_krippendorff_2011_example_with_missing_data() -> None:
    counts = agreement.count_table(raw_ratings(KRIPPENDORFF_2011))
    assert agreement.krippendorff_alpha(counts) == pytest.approx(0.743, abs=5e-4)
    assert agreement.krippendorff_alpha(counts) == pytest.approx(0.74342, abs=5e-6)
    assert agreement.percent_agreement(counts) == pytest.approx(0.8181818, abs=1e-7)
    assert agreement.gwet_ac1(counts) == pytest.approx(0.77544, abs=5e-6)


def test_fleiss_1971_psychiatric_diagnoses() -> None:
    assert agreement.fleiss_kappa(counts_of(FLEISS_1971)) == pytest.approx(0.4302445, abs=1e-7)


def test_wikipedia_fleiss_example() -> None:
    counts = np.array(WIKIPEDIA_FLEISS, dtype=float)
    assert agreement.fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)
    assert agreement.percent_agreement(counts) == pytest.approx(0.378, abs=5e-4)


def test_gwet_handbook_six_raters() -> None:
    counts = np.array(GWET_6_RATERS, dtype=float)
    assert agreement.gwet_ac1(counts) == pytest.approx(0.4448007, abs=1e-7)
    assert agreement.percent_agreement(counts) == pytest.approx(0.5511111, abs=1e-7)
    assert agreement.fleiss_kappa(counts) == pytest.approx(0.4139265, abs=1e-7)
    assert agreement.krippendorff_alpha(counts) == pytest.approx(0.4204384, abs=1e-7)


def test_two_abstractors_cohen_kappa_with_its_standard_error() -> None:
    kappa = agreement.cohen_kappa(pairs_from_table(ABSTRACTORS), confidence=0.95)
    assert kappa is not None
    assert kappa.value == pytest.approx(0.7964094, abs=1e-7)
    # 0.7964094 -/+ 1.959964 * 0.05891072, which irrCAC rounds to (0.68, 0.913).
    assert kappa.ci_low == pytest.approx(0.6809465, abs=1e-6)
    assert kappa.ci_high == pytest.approx(0.9118723, abs=1e-6)
    pairs = pairs_from_table(ABSTRACTORS)
    counts = agreement.count_table([{"a": first, "b": second} for first, second in pairs])
    assert agreement.gwet_ac1(counts) == pytest.approx(0.8493305, abs=1e-7)
    assert agreement.krippendorff_alpha(counts) == pytest.approx(0.7972585, abs=1e-7)
    assert agreement.percent_agreement(counts) == pytest.approx(0.89)


def test_wikipedia_cohen_example() -> None:
    kappa = agreement.cohen_kappa(pairs_from_table(WIKIPEDIA_COHEN), confidence=0.95)
    assert kappa is not None and kappa.value == pytest.approx(0.4)
    assert kappa.ci_low < 0.4 < kappa.ci_high


def test_ac1_resists_the_kappa_paradox() -> None:
    """90 of 100 items agreed, all on the dominant category: kappa goes negative (p_e = 0.905 > p_o = 0.9),
    AC1 stays high: pi = 0.95, p_e = 2 * 0.95 * 0.05 = 0.095, AC1 = (0.9 - 0.095) / 0.905 = 0.8895."""
    skewed = [[90, 5], [5, 0]]
    kappa = agreement.cohen_kappa(pairs_from_table(skewed), confidence=0.95)
    assert kappa is not None and kappa.value == pytest.approx(-0.0526, abs=1e-4)
    counts = agreement.count_table([{"a": a, "b": b} for a, b in pairs_from_table(skewed)])
    assert agreement.gwet_ac1(counts) == pytest.approx(0.8895, abs=1e-4)


def test_undefined_coefficients_are_none() -> None:
    unanimous = agreement.count_table([{"a": "tp", "b": "tp"}, {"a": "tp", "b": "tp"}])
    assert agreement.percent_agreement(unanimous) == 1.0
    assert agreement.fleiss_kappa(unanimous) is None
    assert agreement.krippendorff_alpha(unanimous) is None
    assert agreement.gwet_ac1(unanimous) is None
    assert agreement.cohen_kappa([("tp", "tp"), ("tp", "tp")], 0.95) is None
    single_labels = agreement.count_table([{"a": "tp"}, {"b": "fp"}])
    assert agreement.percent_agreement(single_labels) is None
    uneven = agreement.count_table([{"a": "tp", "b": "fp"}, {"a": "tp", "b": "tp", "c": "fp"}])
    assert agreement.fleiss_kappa(uneven) is None


def test_figures_bootstrap_intervals_are_reproducible_and_bracket_the_estimate() -> None:
    units = raw_ratings(KRIPPENDORFF_2011)
    first = agreement.figures(units, resamples=300)
    assert first == agreement.figures(units, resamples=300)
    assert (first.items, first.labels) == (11, 40)
    for estimate in (first.percent_agreement, first.krippendorff_alpha, first.gwet_ac1, first.fleiss_kappa):
        assert estimate is not None
        assert estimate.ci_low <= estimate.value <= estimate.ci_high
        assert estimate.ci_high - estimate.ci_low > 0.05
    assert first.cohen_kappa is None
    narrow = agreement.figures(units, resamples=300, confidence=0.5)
    assert narrow.gwet_ac1 is not None and first.gwet_ac1 is not None
    assert narrow.gwet_ac1.ci_high - narrow.gwet_ac1.ci_low < first.gwet_ac1.ci_high - first.gwet_ac1.ci_low


def test_figures_for_a_pair_include_cohen_kappa() -> None:
    units = [{"ann": a, "bob": b} for a, b in pairs_from_table(WIKIPEDIA_COHEN)]
    result = agreement.figures(units, resamples=200, pair=("ann", "bob"))
    assert result.cohen_kappa is not None and result.cohen_kappa.value == pytest.approx(0.4)
    assert result.percent_agreement is not None and result.percent_agreement.value == pytest.approx(0.7)
    with pytest.raises(ValueError):
        agreement.figures(units, confidence=1.5)
