"""2-D Gaussian mixtures with known modes: `ring8` and `grid25` (PacGAN / VEEGAN protocol).

ring8: 8 components at angles 2 pi k / 8, k = 0..7 (not `linspace(0, 2 pi, 8)`, whose first and
last angles coincide and leave 7 modes), radius 1, sigma 0.01. grid25: 25 components at
{-4, -2, 0, 2, 4}^2, sigma 0.05. Samples are streamed from the mixture with a seeded generator,
so a seed fixes the data order for every method.
"""

from __future__ import annotations

import math

import torch

from bench.datasets.base import Dataset, dataset_registry
from bench.metrics.base import Metric
from bench.metrics.modes import frechet_to_mixture, mixture_statistics, mode_metrics
from bench.rng import Streams

HQ_GATE = 0.85  # the baseline's median hq_fraction a converged protocol reaches (issue 10)
SUCCESS_HQ = 0.5  # a successful run puts at least this share of its samples on modes


def _modes(data, samples, n) -> dict[str, float]:
    out = mode_metrics(samples, data.means, data.sigma)
    out["all_modes"] = float(out["modes"] == data.n_modes and out["hq_fraction"] >= SUCCESS_HQ)
    return out


def _frechet(data, samples, n) -> float:
    return frechet_to_mixture(samples, data.means, data.sigma)


class GaussianMixture2D(Dataset):
    data_dim = 2
    sigma: float

    def __init__(self, device="cpu", data_root=None, **eval_options):
        super().__init__(device)
        self.means = self.true_means().to(device=device, dtype=torch.float32)

    @classmethod
    def true_means(cls) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def declare_metrics(cls, train=None):
        k = len(cls.true_means())
        return (
            # Every sample counts: diffuse output, noise and collapse all score badly.
            Metric("mode_tv", "min", f"total variation between the samples' histogram over the "
                   f"{k} modes plus an off-mode bin (farther than 3 sigma, or not finite) and the "
                   "mixture's own; 0 = the mixture, about 1 = noise or a total collapse",
                   compute=_modes, primary=True, worst=1.0),
            Metric("modes", "max", "components nearest to at least one high-quality sample "
                   f"(of {k}; PacGAN's count)"),
            Metric("hq_fraction", "max", "fraction of samples within 3 sigma of their nearest "
                   "mean", pareto=True, gate=HQ_GATE),
            # No high-quality sample leaves the reverse KL undefined; a sweep scores it as a
            # total collapse (log K), the worst value a defined histogram can reach.
            Metric("reverse_kl", "min", "PacGAN's reverse KL: sum p log(K p) of the mode "
                   "histogram of high-quality samples only vs uniform (natural log); NaN when "
                   "no sample is high quality; noise can score well on it",
                   pareto=True, worst=math.log(k)),
            Metric("frechet_2d", "min", "Frechet distance between the samples' Gaussian fit "
                   "and the mixture's exact mean and covariance (torch-fidelity's formula; not "
                   "an Inception FID)", compute=_frechet),
            Metric("all_modes", "max", "1 when every mode holds a high-quality sample and at "
                   f"least {SUCCESS_HQ:.0%} of all samples are high quality (the success "
                   "criterion; uniform noise never meets it)", success=True),
        )  # fmt: skip

    @classmethod
    def references(cls, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """Reference sample sets scored beside every table by the same metric code: the
        mixture itself (the finite-sample ceiling), uniform noise over the means' bounding box
        (padded by 10 % of its width), a single Gaussian with the mixture's exact mean and
        covariance, and every sample on one mode (a total collapse)."""
        gen = torch.Generator().manual_seed(seed)
        means = cls.true_means().double()
        lo, hi = means.min(0).values, means.max(0).values
        pad = 0.1 * (hi - lo)
        stats = mixture_statistics(means, cls.sigma)
        chol = torch.linalg.cholesky(torch.as_tensor(stats["sigma"]))
        gauss = (
            torch.as_tensor(stats["mu"])
            + torch.randn(n, 2, generator=gen, dtype=torch.float64) @ chol.T
        )
        return {
            "data": cls._draw(n, gen).double(),
            "uniform noise": lo - pad + (hi - lo + 2 * pad) * torch.rand(n, 2, generator=gen,
                                                                        dtype=torch.float64),
            "moment-matched Gaussian": gauss,
            "one mode": means[0] + cls.sigma * torch.randn(n, 2, generator=gen,
                                                           dtype=torch.float64),
        }  # fmt: skip

    @classmethod
    def _draw(cls, n: int, gen: torch.Generator) -> torch.Tensor:
        """`n` float32 samples from a torch generator (the fixed reference sets)."""
        means = cls.true_means().float()
        idx = torch.randint(len(means), (n,), generator=gen)
        return means[idx] + cls.sigma * torch.randn(n, 2, generator=gen)

    @classmethod
    def landmarks(cls):
        return cls.true_means().numpy()

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    def sample(self, n: int, rng: Streams) -> torch.Tensor:
        idx = rng.integers(self.n_modes, n)
        return self.means[idx] + self.sigma * rng.normal(n, 2, dtype=self.means.dtype)

    def describe(self):
        return {"modes": self.n_modes, "sigma": self.sigma, "dim": 2}


def ring_means(k: int = 8, radius: float = 1.0) -> torch.Tensor:
    angles = 2 * math.pi * torch.arange(k, dtype=torch.float64) / k
    return radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


def grid_means(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    ticks = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(ticks, ticks)


@dataset_registry.register("ring8")
class Ring8(GaussianMixture2D):
    description = "8 Gaussians on the unit circle, sigma 0.01"
    sigma = 0.01

    @classmethod
    def true_means(cls):
        return ring_means()


@dataset_registry.register("grid25")
class Grid25(GaussianMixture2D):
    description = "25 Gaussians on {-4,-2,0,2,4}^2, sigma 0.05"
    sigma = 0.05

    @classmethod
    def true_means(cls):
        return grid_means()
