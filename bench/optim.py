"""The run's optimizer, and its per-run form for populations whose members differ in learning
rate or Adam's betas (a stress axis's multiples, learning-rate trials).

torch's Adam, RMSprop and SGD are elementwise, so on stacked [K, ...] tensors they are K
independent optimizers (Adam bitwise so) as long as the members share one learning rate and one
pair of betas. When they do not, `PerRunOptimizer` applies torch's own update rules (foreach
Adam without weight decay or amsgrad; RMSprop; SGD with Nesterov momentum; plain gradient
descent) with [K] values.

`gd` is plain gradient descent, p <- p - lr g (torch's SGD without momentum): the setting of
the Dirac-GAN's convergence results (Mescheder et al. 2018), where any momentum changes the
eigenvalues the theory is about.
"""

from __future__ import annotations

import torch

from bench.config import TrainConfig


def role_rate(train: TrainConfig, role: str) -> float:
    """A role's learning rate: the recipe's rate times the multiplier (a stress axis)."""
    return train.lr_mult * (train.lr_g if role == "generator" else train.lr_d)


def make_optimizer(params, trains: list[TrainConfig], role: str) -> torch.optim.Optimizer:
    """The optimizer of one role for members with training configs `trains` (one per member;
    they share everything but the fields declared `member=True`)."""
    hyper = [(role_rate(t, role), t.beta1, t.beta2) for t in trains]
    kind = trains[0].optimizer
    if len(set(hyper)) > 1:
        return PerRunOptimizer(params, kind, hyper)
    lr, beta1, beta2 = hyper[0]
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), foreach=True)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    if kind == "gd":
        return torch.optim.SGD(params, lr=lr, foreach=True)
    return torch.optim.SGD(params, lr=lr, momentum=beta1, nesterov=True, foreach=True)


class PerRunOptimizer(torch.optim.Optimizer):
    """Adam, RMSprop, SGD or GD (as `make_optimizer` configures torch's) on stacked parameters
    [K, ...], member k with (learning rate, beta1, beta2) `hyper[k]` (GD reads the rate only)."""

    def __init__(self, params, kind: str, hyper: list[tuple[float, float, float]]):
        super().__init__(params, {"hyper": list(hyper), "kind": kind, "eps": 1e-8})
        self._columns: dict[tuple, tuple[torch.Tensor, ...]] = {}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    lr, b1, b2 = self._values(group["hyper"], p)
                    getattr(self, f"_{group['kind']}")(p, self.state[p], lr, b1, b2, group["eps"])

    def _values(self, hyper, p: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """[K, 1, ...] columns of the members' values, built once per shape (not per step)."""
        key = (p.ndim, p.dtype, p.device)
        if key not in self._columns:
            shape = (-1, *[1] * (p.ndim - 1))
            self._columns[key] = tuple(
                torch.tensor(col, dtype=p.dtype, device=p.device).view(shape)
                for col in zip(*hyper, strict=True)
            )
        return self._columns[key]

    @staticmethod
    def _adam(p, state, lr, b1, b2, eps) -> None:
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t, m, v, g = state["step"], state["exp_avg"], state["exp_avg_sq"], p.grad
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g * (1 - b2), g)
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        denom = (v.sqrt() / bc2.sqrt()).add_(eps)
        p.add_(m / denom * (-lr / bc1))

    @staticmethod
    def _rmsprop(p, state, lr, b1, b2, eps) -> None:
        if not state:
            state["square_avg"] = torch.zeros_like(p)
        avg, g = state["square_avg"], p.grad
        avg.mul_(0.99).addcmul_(g, g, value=0.01)
        p.add_(g / avg.sqrt().add_(eps) * -lr)

    @staticmethod
    def _sgd(p, state, lr, b1, b2, eps) -> None:
        g = p.grad
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = g.clone()
        else:
            state["momentum_buffer"].mul_(b1).add_(g)
        step = g + state["momentum_buffer"] * b1  # Nesterov
        p.add_(step * -lr)

    @staticmethod
    def _gd(p, state, lr, b1, b2, eps) -> None:
        p.add_(p.grad * -lr)
