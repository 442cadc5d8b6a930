"""The run's optimizer, and its per-run form for populations whose members differ in learning
rate or Adam's betas (a stress axis's multiples, learning-rate trials).

torch's Adam, RMSprop and SGD are elementwise, so on stacked [K, ...] tensors they are K
independent optimizers (Adam bitwise so) as long as the members share one learning rate and one
pair of betas. When they do not, `PerRunOptimizer` steps each span of members with equal values
with torch's own optimizer over that span's slices.

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
    kind, params = trains[0].optimizer, list(params)
    if len(set(hyper)) > 1:
        return PerRunOptimizer(params, kind, hyper)
    return torch_optimizer(params, kind, *hyper[0])


def torch_optimizer(params, kind: str, lr: float, beta1: float, beta2: float, fast: bool = True):
    """torch's own optimizer of `kind`, fused (one pass over each tensor instead of one per
    operation of the update rule) where torch has a fused form, foreach otherwise; `fast=False`
    gives torch's plain for-loop form (the reference the tests hold the fast one to)."""
    fused = {"fused": True} if fast else {"foreach": False}
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(beta1, beta2), **fused)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=fast)
    if kind == "gd":
        return torch.optim.SGD(params, lr=lr, **fused)
    return torch.optim.SGD(params, lr=lr, momentum=beta1, nesterov=True, **fused)


def spans(hyper: list) -> list[tuple[int, int]]:
    """[start, stop) of each run of consecutive members with equal values."""
    starts = [i for i in range(len(hyper)) if i == 0 or hyper[i] != hyper[i - 1]]
    return list(zip(starts, [*starts[1:], len(hyper)], strict=True))


class PerRunOptimizer(torch.optim.Optimizer):
    """Members with their own (learning rate, beta1, beta2) `hyper[k]` on stacked parameters
    [K, ...]: each span of consecutive members with equal values is stepped by torch's own
    (fused) optimizer over the span's slices of the parameters, so every member gets exactly
    the update an ordinary run gets. Members sorted by their values make few spans (a suite
    packs them so); the worst case is one span per member."""

    def __init__(self, params, kind: str, hyper: list[tuple[float, float, float]]):
        super().__init__(params, {})
        self.params = [p for g in self.param_groups for p in g["params"]]
        self.parts = [
            (slice(a, b), torch_optimizer([p.detach()[a:b] for p in self.params], kind,
                                          *hyper[a]))
            for a, b in spans(hyper)
        ]  # fmt: skip

    @torch.no_grad()
    def step(self, closure=None):
        for where, opt in self.parts:
            views = opt.param_groups[0]["params"]
            for view, p in zip(views, self.params, strict=True):
                view.grad = None if p.grad is None else p.grad[where]
            opt.step()
