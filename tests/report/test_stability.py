"""The stability section's statistics on a hand-made frame whose answers are known."""

import math

import pandas as pd
import pytest

from bench.metrics.base import Metric
from bench.report import stability, stats

DECLARED = [
    Metric("mode_tv", "min", "", primary=True, worst=1.0),
    Metric("all_modes", "max", "", success=True),
    Metric("hq_fraction", "max", "", gate=0.85),
]
MULTS = (1, 10, 30)
# successes out of 10 seeds per (method, multiplier): the baseline fails at x30, the clipper not
WINS = {"none": (10, 8, 0), "clip": (10, 9, 9)}


def frame(seed_set: str = "main", offset: int = 0) -> pd.DataFrame:
    rows = []
    for label, wins in WINS.items():
        for mult, k in zip(MULTS, wins, strict=True):
            for seed in range(10):
                ok = seed < k
                rows.append({
                    "label": label, "cell": f"lr_mult={mult}.0", "seed": seed + offset,
                    "status": "finished", "eval/all_modes": float(ok),
                    "eval/mode_tv": 0.1 if ok else 0.9, "eval/hq_fraction": 0.9,
                    "reference_cell": mult == 1, "axis.lr_mult": f"{mult}.0",
                    "start_time": pd.Timestamp(2026, 1, 1) + pd.Timedelta(seconds=mult),
                    "seed_set": seed_set, "summary/clip_rate/discriminator": 0.5,
                })  # fmt: skip
    return pd.DataFrame(rows)


def test_cells_carry_wilson_intervals_and_fisher_tests_against_the_baseline():
    out = stability.outcomes(frame(), DECLARED)
    table = stability.cell_stats(out)
    r = table.loc[("clip", "lr_mult=30.0")]
    assert (r.k, r.n) == (9, 10) and (r.low, r.high) == pytest.approx(stats.wilson(9, 10))
    tests = stability.fisher_tests(table)
    t = tests.loc[("clip", "lr_mult=30.0")]
    assert t.p == pytest.approx(stats.fisher_p(9, 10, 0, 10)) and t.sign == 1
    assert t.p_holm == pytest.approx(min(1.0, 3 * t.p))  # the smallest of 3 tests
    assert tests.loc[("clip", "lr_mult=1.0")].p == 1.0


def test_stress_difference_is_paired_by_seed():
    out = stability.outcomes(frame(), DECLARED)
    diff = stability.stress_difference(out, "lr_mult=1.0")
    # seeds 0-7: both succeed at x10, only clip at x30: +0.5; seed 8: clip wins both cells: +1;
    # seed 9: clip fails both, the baseline x10 fails too: 0. Mean (8 * 0.5 + 1 + 0) / 10.
    assert diff.loc["clip", "diff"] == pytest.approx(0.5)
    assert diff.loc["clip", "low"] > 0 and math.isnan(diff.loc["none", "diff"])
    assert diff.loc["none", "rate"] == pytest.approx(8 / 20)


def test_stable_range_is_the_largest_value_with_half_the_seeds_succeeding():
    df = frame()
    ladders = stability.numeric_axes(df)
    assert list(ladders) == ["lr_mult"]
    ranges = stability.stable_range(stability.outcomes(df, DECLARED), ladders["lr_mult"])
    assert ranges.loc["none", "range"] == 10 and ranges.loc["clip", "range"] == 30
    assert ranges.loc["clip", "low"] <= 30 <= ranges.loc["clip", "high"]


def test_claims_replicate_only_when_the_second_seed_set_agrees():
    df = pd.concat([frame(), frame(stability.REPLICATION, offset=100)], ignore_index=True)
    text = stability.verdict(df, DECLARED, set())
    line = next(ln for ln in text.splitlines() if "(cell lr_mult=30.0" in ln)
    assert line.startswith("- `clip`: significantly more successes than `none` (cell ")
    assert "9/10 against " in line and "Holm p = " in line and line.endswith("**replicated**")
    WINS["clip"] = (10, 9, 1)  # the second set would disagree
    try:
        other = pd.concat([frame(), frame(stability.REPLICATION, offset=100)], ignore_index=True)
    finally:
        WINS["clip"] = (10, 9, 9)
    first = frame()
    mixed = pd.concat([first, other[other.seed_set == stability.REPLICATION]], ignore_index=True)
    assert "not replicated" in stability.verdict(mixed, DECLARED, set())


def test_a_method_missing_the_gate_at_the_reference_is_marked_not_ranked():
    df = frame()
    df.loc[(df.label == "clip") & df.reference_cell, "eval/hq_fraction"] = 0.1
    assert stability.unconverged(df, DECLARED) == {"clip"}
    text = stability.verdict(df, DECLARED, {"clip"})
    assert "`clip`: not converged at the reference cell" in text
    # not ranked, but what it does is still said
    assert "more successes than `none` (cell lr_mult=30.0" in text
    assert "not converged at the reference" in text.splitlines()[0]
