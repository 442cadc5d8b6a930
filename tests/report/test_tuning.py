import math

import numpy as np
import pytest

from bench.report.tuning import expected_best


def test_expected_best_matches_the_closed_form_for_one_and_many_trials():
    values = [3.0, 1.0, 2.0]
    curve = expected_best(values, 12, "min", resamples=20000, seed=1)
    assert curve[0] == pytest.approx(2.0, abs=0.03)  # one draw: the mean
    # two draws with replacement: P(best=1) = 5/9, P(best=2) = 3/9, P(best=3) = 1/9
    assert curve[1] == pytest.approx((5 * 1 + 3 * 2 + 1 * 3) / 9, abs=0.03)
    assert curve[-1] == pytest.approx(1.0, abs=0.01)
    assert np.all(np.diff(curve) <= 1e-9)


def test_expected_best_counts_pruned_trials_as_never_winning():
    curve = expected_best([math.nan, 5.0], 1, "max", resamples=4000)
    assert curve[0] == 5.0  # draws of the pruned trial alone have no best and are skipped
    assert np.isnan(expected_best([], 2, "min")).all()
