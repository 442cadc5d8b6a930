"""Statistics for reports: robust summaries, bootstrap intervals, tests against the baseline.

GAN outcomes are often bimodal (collapsed or healthy), so summaries are median and IQR, means
come with a BCa bootstrap CI, and each method is tested against `none` with the
Mann-Whitney U test (two-sided), p-values Holm-corrected over the methods of one table, effect
size Cliff's delta (P(method > none) - P(method < none)).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats


def finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


def median_iqr(values) -> tuple[float, float, float]:
    """(median, 25th, 75th percentile) of the finite values (linear interpolation)."""
    a = finite(values)
    if a.size == 0:
        return (math.nan,) * 3
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return float(med), float(q1), float(q3)


def bootstrap_ci(values, level: float = 0.95, resamples: int = 2000, seed: int = 0):
    """(mean, low, high): BCa bootstrap CI of the mean of the finite values (bias-corrected and
    accelerated: closer to its nominal coverage than the percentile interval at 5-10 seeds);
    the percentile interval where BCa is undefined (e.g. two distinct values)."""
    a = finite(values)
    if a.size == 0:
        return (math.nan,) * 3
    mean = float(a.mean())
    if a.size < 2 or np.all(a == a[0]):
        return mean, mean, mean
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():  # BCa's degenerate-jackknife warning: we fall back
            warnings.simplefilter("ignore")
            ci = stats.bootstrap(
                (a,), np.mean, confidence_level=level, n_resamples=resamples, method=method,
                rng=np.random.default_rng(seed),
            ).confidence_interval  # fmt: skip
        if np.isfinite(ci.low) and np.isfinite(ci.high):
            break
    return mean, float(ci.low), float(ci.high)


def cliffs_delta(x, y) -> float:
    """P(X > Y) - P(X < Y) over all pairs; in [-1, 1]."""
    x, y = finite(x), finite(y)
    if x.size == 0 or y.size == 0:
        return math.nan
    diff = x[:, None] - y[None, :]
    return float((np.sign(diff)).mean())


def mann_whitney_p(x, y) -> float:
    x, y = finite(x), finite(y)
    if x.size == 0 or y.size == 0:
        return math.nan
    if np.all(np.concatenate([x, y]) == x[0]):
        return 1.0  # identical samples: no evidence of a difference
    return float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, math.nan)
    idx = np.where(np.isfinite(p))[0]
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    adjusted = np.maximum.accumulate([(m - i) * p[j] for i, j in enumerate(order)])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def ranks(values, direction: str) -> np.ndarray:
    """Rank 1 = best; ties share the average rank; NaN ranks last."""
    a = np.asarray(values, dtype=float)
    key = np.where(np.isfinite(a), a if direction == "min" else -a, np.inf)
    return stats.rankdata(key, method="average")


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a success rate k / n (good coverage at small n, never
    outside [0, 1]); (nan, nan) for n = 0."""
    if n == 0:
        return math.nan, math.nan
    z = stats.norm.ppf(0.5 + level / 2)
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided Fisher's exact test of k1 / n1 against k2 / n2 successes."""
    if n1 == 0 or n2 == 0:
        return math.nan
    table = [[k1, n1 - k1], [k2, n2 - k2]]
    return float(stats.fisher_exact(table, alternative="two-sided").pvalue)
