import math

import numpy as np
import pytest
import scipy.linalg
import torch

from bench.datasets import create_dataset
from bench.metrics.modes import frechet_to_mixture, mixture_statistics, mode_metrics
from bench.rng import DATA, Streams

HQ_EXPECTED = 1 - math.exp(-4.5)  # P(||N(0, s^2 I_2)|| < 3 s) = 0.98889
Q = math.exp(-4.5)  # the mixture's own off-mode mass in 2-D


@pytest.mark.parametrize("name,k", [("ring8", 8), ("grid25", 25)])
def test_perfect_samples_capture_all_modes_with_expected_quality(name, k):
    data = create_dataset(name)
    samples = data.sample(100_000, Streams([0], DATA))[0]
    m = mode_metrics(samples, data.means, data.sigma)
    assert m["modes"] == k
    assert m["hq_fraction"] == pytest.approx(HQ_EXPECTED, abs=2e-3)
    m = mode_metrics(samples[:2500], data.means, data.sigma)
    assert m["modes"] == k and m["reverse_kl"] < 0.02


def test_collapsed_generator_captures_one_mode():
    data = create_dataset("ring8")
    samples = data.means[3].repeat(2500, 1)
    m = mode_metrics(samples, data.means, data.sigma)
    tv = 0.5 * (7 / 8 * (1 - Q) + 1 - (1 - Q) / 8 + Q)
    assert m == {"modes": 1, "hq_fraction": 1.0, "reverse_kl": pytest.approx(math.log(8)),
                 "mode_tv": pytest.approx(tv)}  # fmt: skip


def test_reverse_kl_hand_computed():
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]])
    # 3 samples on mode 0, 1 on mode 1, one far away (low quality, ignored).
    samples = torch.tensor([[0.0, 0.0]] * 3 + [[10.0, 0.0], [5.0, 5.0]])
    m = mode_metrics(samples, means, sigma=0.1)
    p = np.array([0.75, 0.25])
    assert m["modes"] == 2 and m["hq_fraction"] == pytest.approx(0.8)
    assert m["reverse_kl"] == pytest.approx(float((p * np.log(4 * p)).sum()))
    # mode_tv by hand: histogram (0.6, 0.2, 0, 0 | off 0.2) against ((1-Q)/4 each | Q)
    ref = (1 - Q) / 4
    tv = 0.5 * (abs(0.6 - ref) + abs(0.2 - ref) + 2 * ref + abs(0.2 - Q))
    assert m["mode_tv"] == pytest.approx(tv)


def test_non_finite_samples_are_low_quality_not_a_crash():
    data = create_dataset("ring8")
    m = mode_metrics(torch.full((10, 2), float("nan")), data.means, data.sigma)
    assert m["modes"] == 0 and m["hq_fraction"] == 0.0 and math.isnan(m["reverse_kl"])
    assert m["mode_tv"] == pytest.approx(1 - Q)  # finite: everything in the off-mode bin


def _dropping(data, keep: int, hq: float, n: int, gen) -> torch.Tensor:
    """A converged generator that dropped modes: `hq` of its samples on `keep` of the modes
    (evenly), the rest scattered just off them (5 sigma away)."""
    on = round(hq * n)
    idx = torch.arange(on) % keep
    x = data.means[idx] + data.sigma * torch.randn(on, 2, generator=gen)
    off_idx = torch.arange(n - on) % keep
    angle = 2 * math.pi * torch.rand(n - on, generator=gen)
    ring = torch.stack([angle.cos(), angle.sin()], 1) * 5 * data.sigma
    return torch.cat([x, data.means[off_idx] + ring])


@pytest.mark.parametrize("name,keep", [("ring8", 6), ("grid25", 18)])
def test_noise_collapse_and_moments_score_worse_than_a_mode_dropping_generator(name, keep):
    """The primary metric orders: data < converged but mode-dropping < {uniform noise over the
    bounding box, the moment-matched Gaussian, everything on one mode}; always finite."""
    from bench.datasets import dataset_registry
    from bench.metrics.base import evaluate

    cls, data, n = dataset_registry.get(name), create_dataset(name), 2500
    primary = next(m for m in cls.declare_metrics() if m.primary)
    assert primary.name == "mode_tv"

    def score(x):
        return evaluate(data, cls.declare_metrics(), lambda k: x.float(), n)[primary.name]

    refs = {k: score(v) for k, v in cls.references(n, seed=0).items()}
    dropping = score(_dropping(data, keep, 0.9, n, torch.Generator().manual_seed(1)))
    nulls = [refs["uniform noise"], refs["moment-matched Gaussian"], refs["one mode"]]
    assert refs["data"] < dropping < min(nulls), (refs, dropping)
    assert all(math.isfinite(v) for v in [*refs.values(), dropping])
    # the old primary (reverse KL over high-quality samples) let noise beat that generator
    old = evaluate(data, cls.declare_metrics(), lambda k: _dropping(
        data, keep, 0.9, n, torch.Generator().manual_seed(1)), n)["reverse_kl"]  # fmt: skip
    noise = cls.references(n, seed=0)["uniform noise"].float()
    if name == "grid25":
        assert evaluate(data, cls.declare_metrics(), lambda k: noise, n)["reverse_kl"] < old


def test_frechet_2d_matches_scipy_sqrtm():
    data = create_dataset("grid25")
    gen = torch.Generator().manual_seed(1)
    samples = torch.randn(3000, 2, generator=gen) * torch.tensor([1.5, 3.0]) + 0.3
    ref = mixture_statistics(data.means, data.sigma)
    x = samples.double().numpy()
    mu, cov = x.mean(0), np.cov(x, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov @ ref["sigma"]).real
    expected = ((mu - ref["mu"]) ** 2).sum() + np.trace(cov + ref["sigma"] - 2 * covmean)
    assert frechet_to_mixture(samples, data.means, data.sigma) == pytest.approx(expected, rel=1e-6)


def test_mixture_statistics_match_a_large_sample():
    data = create_dataset("ring8")
    x = data.sample(400_000, Streams([2], DATA))[0].double().numpy()
    ref = mixture_statistics(data.means, data.sigma)
    np.testing.assert_allclose(x.mean(0), ref["mu"], atol=5e-3)
    np.testing.assert_allclose(np.cov(x, rowvar=False), ref["sigma"], atol=5e-3)
