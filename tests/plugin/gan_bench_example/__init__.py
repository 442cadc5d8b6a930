"""A third-party method as a user would ship it in their own package: a class and its config,
registered through the entry-point group `gan_bench.methods` (see the .dist-info beside it)."""

from dataclasses import dataclass

import torch

from bench.methods import Method, MethodConfig
from bench.params import Search, param


@dataclass(frozen=True)
class ShrinkConfig(MethodConfig):
    factor: float = param(0.5, low=0.0, high=1.0, low_open=True, search=Search(0.1, 1.0),
                          help="every gradient is multiplied by this")  # fmt: skip


class Shrink(Method):
    """Multiplies every gradient by a constant factor (a toy stabilizer)."""

    config_cls = ShrinkConfig
    family = "gradient clipping"

    @torch.no_grad()
    def after_backward(self, ctx):
        torch._foreach_mul_(ctx.grads, self.config.factor)
        return {}


class Broken(Method):
    """Breaks the contract: it does nothing at all."""
