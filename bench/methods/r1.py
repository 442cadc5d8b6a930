"""R1 gradient penalty on real data: gamma / 2 * E_real ||grad_x D(x)||^2 added to D's loss.

Mescheder, Geiger and Nowozin 2018, "Which Training Methods for GANs do actually Converge?"
(arXiv 1801.04406), section 4.1, eq. 9. `gamma` is stored in that convention (the 1/2 applied
here).
"""

from dataclasses import dataclass

import torch

from bench.methods.base import Method, MethodConfig, register_method
from bench.params import Search, param


@dataclass(frozen=True)
class R1Config(MethodConfig):
    targets: tuple[str, ...] = param(("discriminator",), choices=("discriminator",))
    gamma: float = param(10.0, low=0.0, low_open=True, search=Search(1e-2, 1e2))


def input_gradient(discriminator, x: torch.Tensor) -> torch.Tensor:
    """grad_x sum D(x) per sample, [K, B, features], kept in the graph so the penalty can be
    backpropagated. Summing over runs is exact: each run's D sees only its own inputs."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x).sum(), x, create_graph=True)
    return grad.flatten(2)


@register_method
class R1(Method):
    config_cls = R1Config
    family = "penalty"
    PER_RUN = True

    def loss(self, terms, ctx):
        grad = input_gradient(ctx.discriminator, ctx.real)
        gamma = self.per_run(ctx, "gamma")
        return terms | {"r1": gamma / 2 * grad.pow(2).sum(2).mean(1)}
