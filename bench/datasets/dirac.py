"""The Dirac-GAN (Mescheder, Geiger and Nowozin 2018, "Which Training Methods for GANs do
actually Converge?", arXiv 1801.04406, section 2.2): a known-answer control.

The data are a point mass at 0 in 1-D; G is a single parameter theta (G(z) = theta for every
noise sample) and D is linear, D(x) = psi x, without a bias (model kind `dirac`). The unique
equilibrium is (theta, psi) = (0, 0). The paper proves that the Jacobian of unregularised
training has the purely imaginary eigenvalues +-f'(0) i there, so gradient descent does not
converge linearly (simultaneous updates spiral out, alternating ones circle), and that R1
makes it converge locally, and linearly (exponentially fast). With the non-saturating loss (the
default) the nonlinear terms shrink the unregularised circle, but only sublinearly (its radius
like 1 / sqrt(t): about 0.28 after 1,000 steps of 0.1, 0.08 after 1,000 of 1.0), so it
never gets near the tolerance below in any practical run. Training uses plain gradient descent
(`gd`), the paper's setting; the step size (the learning-rate multiplier) is the stress axis.

Metrics see the generator's samples only, not D: `distance` is the Wasserstein-1 distance of
the samples to the point mass, the mean |x| (|theta| for the Dirac generator), and `converged`
asks that it be below TOLERANCE at the end. A tight tolerance is what makes a G-only criterion
sound here: training that converges linearly gets far below it within a few hundred steps,
while a run still circling with radius r ends inside it only when its last step happens to
cross theta = 0, with a probability of about (2 / pi) arcsin(TOLERANCE / r) (0.1 % for r =
0.05, the smallest radius the unregularised runs keep here).
"""

from __future__ import annotations

import torch

from bench.datasets.base import Dataset, dataset_registry
from bench.metrics.base import Metric
from bench.rng import Streams

TOLERANCE = 1e-4  # success: the generator within this distance of the data at the end
CAP = 10.0  # distances are capped here (10x the starting radius): beyond it, runs failed alike


def point_mass_distance(samples: torch.Tensor) -> float:
    """Wasserstein-1 distance between `samples` [n, d] and the point mass at 0: the mean norm
    of a sample, capped at CAP; CAP when any sample is not finite (a run that blew up)."""
    x = samples.detach().double().cpu().flatten(1)
    if not torch.isfinite(x).all():
        return CAP
    return min(float(torch.linalg.vector_norm(x, dim=1).mean()), CAP)


def _distance(data, samples, n) -> dict[str, float]:
    d = point_mass_distance(samples)
    return {"distance": d, "converged": float(d < TOLERANCE)}


@dataset_registry.register("dirac")
class Dirac(Dataset):
    description = "a point mass at 0 in 1-D (the Dirac-GAN of Mescheder et al. 2018)"
    data_dim = 1
    keep_samples = 100  # every sample of the Dirac generator is the same point
    caveat = (
        "A known-answer control: the Dirac-GAN, where unregularised training provably does not "
        "converge linearly and R1 does. Metrics see the generator only (|theta|), so success "
        f"is |theta| < {TOLERANCE:g} at the end, a tolerance that a run still circling meets "
        "only by chance."
    )

    @classmethod
    def declare_metrics(cls, train=None):
        return (
            Metric("distance", "min", "Wasserstein-1 distance of the samples to the data's point "
                   "mass at 0 (the Dirac generator's |theta|), capped at "
                   f"{CAP:g}; {CAP:g} when not finite", compute=_distance, primary=True,
                   worst=CAP),
            Metric("converged", "max", f"1 when the distance is below {TOLERANCE:g} at the end "
                   "(the run reached the equilibrium; the success criterion)", success=True),
        )  # fmt: skip

    @classmethod
    def train_defaults(cls) -> dict:
        # Plain gradient descent at step 0.1 for both players, 1,000 steps: R1 at gamma 1
        # reaches the tolerance within a few hundred steps (gamma 0.3 within about 700), while
        # the unregularised run is still circling at a radius near 0.28 (its non-saturating loss
        # shrinks the circle only sublinearly, like 1 / sqrt(t)). Every sample is the same
        # point, so a batch of one is the paper's exact gradient and ten evaluation samples
        # are plenty.
        return {"optimizer": "gd", "lr_g": 0.1, "lr_d": 0.1, "steps": 1000, "batch_size": 1,
                "eval_every": 100, "eval_samples": 10, "log_every": 100,
                "layer_stats_every": 500}  # fmt: skip

    @classmethod
    def model_defaults(cls) -> dict:
        return {"kind": "dirac", "data_dim": cls.data_dim, "z_dim": 1}

    def sample(self, n: int, rng: Streams) -> torch.Tensor:
        return torch.zeros(len(rng.keys), n, self.data_dim, device=self.device)

    def describe(self) -> dict:
        return {"point": 0.0, "dim": self.data_dim, "tolerance": TOLERANCE}

    @classmethod
    def references(cls, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
        """The data itself (distance 0, converged): the row every run is measured against."""
        return {"data": torch.zeros(n, cls.data_dim, dtype=torch.float64)}
