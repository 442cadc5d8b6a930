"""Report statistics on frames with known values, against hand and scipy computations."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.report import stats
from bench.report.tables import format_method_table, method_table, significance_table

METRICS = [("modes", "max"), ("reverse_kl", "min")]


def _frame():
    rows = []
    data = {
        "none": ([1, 2, 8, 3], [1.2, 0.9, 0.01, 0.7], ["finished"] * 4),
        "norm_clip": ([8, 8, 7, 8], [0.02, 0.03, 0.1, 0.01], ["finished"] * 4),
        "value_clip": ([0, 8, 8, 0], [math.nan, 0.05, 0.04, math.nan], ["diverged", "finished",
                                                                          "finished", "diverged"]),
    }  # fmt: skip
    for label, (modes, kl, status) in data.items():
        for seed, (m, k, s) in enumerate(zip(modes, kl, status, strict=True)):
            clip = 0.5 if label != "none" else 0.0
            rows.append({"label": label, "seed": seed, "status": s, "eval/modes": m,
                         "eval/reverse_kl": k, "eval/all_modes": float(m == 8),
                         "summary/clip_rate/discriminator": clip})  # fmt: skip
    return pd.DataFrame(rows)


def test_median_and_iqr_match_numpy():
    assert stats.median_iqr([1, 2, 8, 3]) == (2.5, 1.75, 4.25)  # hand: linear interpolation
    assert stats.median_iqr([math.nan, 4.0]) == (4.0, 4.0, 4.0)


def test_bootstrap_ci_contains_the_mean_and_matches_scipy():
    values = [0.1, 0.4, 0.35, 0.8, 0.2]
    mean, lo, hi = stats.bootstrap_ci(values, seed=3)
    ref = sps.bootstrap((np.array(values),), np.mean, n_resamples=2000, method="BCa",
                        rng=np.random.default_rng(3)).confidence_interval  # fmt: skip
    assert mean == pytest.approx(0.37) and (lo, hi) == pytest.approx((ref.low, ref.high))
    assert lo < mean < hi
    assert stats.bootstrap_ci([2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_holm_matches_hand_computation():
    # sorted p: 0.01 (x3), 0.02 (x2), 0.04 (x1) -> 0.03, 0.04, 0.04; NaN ignored
    out = stats.holm([0.04, 0.01, math.nan, 0.02])
    np.testing.assert_allclose(out, [0.04, 0.03, math.nan, 0.04])
    assert stats.holm([0.5, 0.6]).tolist() == [1.0, 1.0]


def test_cliffs_delta_and_mann_whitney_against_scipy():
    x, y = [8, 8, 7, 8], [1, 2, 8, 3]
    # pairs: x > y in 3*3 + 3 = 12 of 16... hand: each 8 beats 1,2,3 and ties 8; 7 beats 1,2,3
    assert stats.cliffs_delta(x, y) == pytest.approx((12 - 1) / 16)
    assert stats.mann_whitney_p(x, y) == pytest.approx(
        sps.mannwhitneyu(x, y, alternative="two-sided").pvalue
    )
    assert stats.mann_whitney_p([1, 1], [1, 1]) == 1.0


def test_ranks_best_first_with_ties_and_nan_last():
    assert stats.ranks([0.5, 0.1, 0.1, math.nan], "min").tolist() == [3.0, 1.5, 1.5, 4.0]
    assert stats.ranks([1, 8, 3], "max").tolist() == [3.0, 1.0, 2.0]


def test_method_table_values():
    t = method_table(_frame(), METRICS, "reverse_kl", "all_modes")
    assert list(t.index) == ["none", "norm_clip", "value_clip"]
    assert t.loc["none", "modes"] == 2.5 and t.loc["none", "modes q3"] == 4.25
    assert t.loc["norm_clip", "reverse_kl"] == pytest.approx(0.025)
    assert t.loc["value_clip", "diverged"] == 0.5
    assert t.loc["value_clip", "success"] == 0.5  # diverged runs count as failures
    assert t.loc["value_clip", "n reverse_kl"] == 2 and t.loc["value_clip", "runs"] == 4
    assert t.loc["value_clip", "reverse_kl"] == pytest.approx(0.045)
    assert t["rank"].tolist() == [3.0, 1.0, 2.0]  # medians 0.8, 0.025, 0.045
    mean, lo, hi = stats.bootstrap_ci([1.2, 0.9, 0.01, 0.7])
    assert (t.loc["none", "reverse_kl mean"], t.loc["none", "reverse_kl ci low"]) == (mean, lo)
    assert t.loc["norm_clip", "clip rate D"] == 0.5 and math.isnan(t.loc["none", "clip rate G"])


def test_significance_table_values():
    df = _frame()
    sig = significance_table(df, METRICS)
    p_norm = sps.mannwhitneyu([8, 8, 7, 8], [1, 2, 8, 3], alternative="two-sided").pvalue
    p_val = sps.mannwhitneyu([0, 8, 8, 0], [1, 2, 8, 3], alternative="two-sided").pvalue
    assert sig.loc["norm_clip", "modes p"] == pytest.approx(p_norm)
    expected = stats.holm([p_norm, p_val])
    assert sig["modes p holm"].tolist() == pytest.approx(expected.tolist())
    assert sig.loc["norm_clip", "reverse_kl delta"] == pytest.approx(
        stats.cliffs_delta([0.02, 0.03, 0.1, 0.01], [1.2, 0.9, 0.01, 0.7])
    )


def test_formatted_table_marks_the_best_cell_per_column():
    md = format_method_table(
        method_table(_frame(), METRICS, "reverse_kl", "all_modes"), METRICS, "reverse_kl", True
    )
    norm_row = next(line for line in md.splitlines() if line.startswith("| norm_clip"))
    assert "**8 [7.75, 8]**" in norm_row and "**0.025 [0.0175, 0.0475]**" in norm_row
    val_row = next(line for line in md.splitlines() if line.startswith("| value_clip"))
    assert "(n=2)" in val_row and "50%" in val_row


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (7, 20), (1, 3)])
def test_wilson_matches_scipy(k, n):
    ref = __import__("scipy").stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert stats.wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_wilson_by_hand_at_zero_successes():
    z2 = 1.959963984540054**2  # upper bound at k = 0 is z^2 / (n + z^2)
    assert stats.wilson(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))


def test_fisher_matches_scipy_and_a_hand_computed_table():
    from math import comb

    import scipy.stats

    assert stats.fisher_p(9, 10, 2, 10) == pytest.approx(
        scipy.stats.fisher_exact([[9, 1], [2, 8]]).pvalue
    )
    # 3/3 against 0/3: the table and its mirror are the only ones as extreme, each C(3,3)C(3,0)
    # / C(6,3) = 1/20, so p = 0.1.
    assert stats.fisher_p(3, 3, 0, 3) == pytest.approx(2 * comb(3, 3) * comb(3, 0) / comb(6, 3))
