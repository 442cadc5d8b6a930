"""The run's optimizer, and its per-run form for populations whose members differ in learning
rate (the stability map's multiples, learning-rate trials).

torch's Adam, RMSprop and SGD are elementwise, so on stacked [K, ...] tensors they are K
independent optimizers (Adam bitwise so) as long as the members share one learning rate. When
they do not, `PerRunOptimizer` applies torch's own update rules (foreach Adam without weight
decay or amsgrad; RMSprop; SGD with Nesterov momentum) with a [K] learning rate.
"""

from __future__ import annotations

import torch

from bench.config import TrainConfig


def make_optimizer(params, train: TrainConfig, lr: float | list[float]) -> torch.optim.Optimizer:
    """The optimizer of one role: torch's, or the per-run one when `lr` holds several values."""
    if isinstance(lr, list) and len(set(lr)) > 1:
        return PerRunOptimizer(params, train, lr)
    lr = lr[0] if isinstance(lr, list) else lr
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(train.beta1, train.beta2), foreach=True)
    if train.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, foreach=True)
    return torch.optim.SGD(params, lr=lr, momentum=train.beta1, nesterov=True, foreach=True)


class PerRunOptimizer(torch.optim.Optimizer):
    """Adam, RMSprop or SGD (as `make_optimizer` configures torch's) on stacked parameters
    [K, ...], member k at learning rate `lrs[k]`."""

    def __init__(self, params, train: TrainConfig, lrs: list[float]):
        defaults = {"lr": list(lrs), "kind": train.optimizer,
                    "betas": (train.beta1, train.beta2), "eps": 1e-8}  # fmt: skip
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    getattr(self, f"_{group['kind']}")(p, self.state[p], group)

    @staticmethod
    def _rates(values: list[float], p: torch.Tensor) -> torch.Tensor:
        return torch.tensor(values, dtype=p.dtype, device=p.device).view(-1, *[1] * (p.ndim - 1))

    def _adam(self, p, state, group) -> None:
        b1, b2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t, m, v, g = state["step"], state["exp_avg"], state["exp_avg_sq"], p.grad
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        denom = (v.sqrt() / bc2**0.5).add_(group["eps"])
        p.add_(m / denom * self._rates([-lr / bc1 for lr in group["lr"]], p))

    def _rmsprop(self, p, state, group) -> None:
        if not state:
            state["square_avg"] = torch.zeros_like(p)
        avg, g = state["square_avg"], p.grad
        avg.mul_(0.99).addcmul_(g, g, value=0.01)
        p.add_(g / avg.sqrt().add_(group["eps"]) * self._rates([-lr for lr in group["lr"]], p))

    def _sgd(self, p, state, group) -> None:
        momentum, g = group["betas"][0], p.grad
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = g.clone()
        else:
            state["momentum_buffer"].mul_(momentum).add_(g)
        step = g.add(state["momentum_buffer"], alpha=momentum)  # Nesterov
        p.add_(step * self._rates([-lr for lr in group["lr"]], p))
