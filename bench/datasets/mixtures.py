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
from bench.metrics.modes import frechet_to_mixture, mode_metrics


def _modes(data, samples, n) -> dict[str, float]:
    out = mode_metrics(samples, data.means, data.sigma)
    out["all_modes"] = float(out["modes"] == data.n_modes)
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
            Metric("modes", "max", "components nearest to at least one high-quality sample "
                   f"(of {k})", compute=_modes),
            Metric("hq_fraction", "max", "fraction of samples within 3 sigma of their nearest "
                   "mean", pareto=True),
            # No high-quality sample leaves the reverse KL undefined; a sweep scores it as a
            # total collapse (log K), the worst value a defined histogram can reach.
            Metric("reverse_kl", "min", "sum p log(K p) of the mode histogram of high-quality "
                   "samples vs uniform (natural log); NaN when no sample is high quality",
                   primary=True, pareto=True, worst=math.log(k)),
            Metric("frechet_2d", "min", "Frechet distance between the samples' Gaussian fit "
                   "and the mixture's exact mean and covariance (torch-fidelity's formula; not "
                   "an Inception FID)", compute=_frechet),
            Metric("all_modes", "max", "1 when every mode is captured (the success criterion)",
                   success=True),
        )  # fmt: skip

    @classmethod
    def landmarks(cls):
        return cls.true_means().numpy()

    @property
    def n_modes(self) -> int:
        return self.means.shape[0]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        dev = self.means.device
        idx = torch.randint(self.n_modes, (n,), generator=generator, device=dev)
        noise = torch.randn(n, 2, generator=generator, device=dev)
        return self.means[idx] + self.sigma * noise

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
