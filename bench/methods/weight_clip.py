"""WGAN weight clipping: after each critic step, clamp every critic parameter to [-c, c].

Arjovsky, Chintala and Bottou 2017, "Wasserstein GAN" (arXiv 1701.07875), Algorithm 1:
c = 0.01, RMSprop lr 5e-5, n_critic 5, Wasserstein loss, and the critic schedule of the paper's
code (100 critic iterations for the first 25 generator iterations and every 500th). That recipe
is applied by default and recorded as `train.recipe = wgan`; `use_recipe=false` runs it on the
shared recipe instead.
"""

from dataclasses import dataclass

import torch

from bench.methods.base import Method, MethodConfig, register_method
from bench.metrics.gradients import per_run
from bench.params import ROLES, Search, param


@dataclass(frozen=True)
class WeightClipConfig(MethodConfig):
    targets: tuple[str, ...] = param(("discriminator",), choices=ROLES)
    clip_value: float = param(0.01, low=0.0, low_open=True, search=Search(1e-3, 1e-1))
    use_recipe: bool = param(True, help="WGAN loss, RMSprop 5e-5, n_critic 5 (100 early)")


@register_method
class WeightClip(Method):
    config_cls = WeightClipConfig
    family = "weight clipping"
    PER_RUN = True
    RECIPE = {"loss": "wasserstein", "optimizer": "rmsprop", "lr_g": 5e-5, "lr_d": 5e-5,
              "n_critic": 5, "critic_schedule": "wgan", "recipe": "wgan"}  # fmt: skip

    @torch.no_grad()
    def after_step(self, ctx):
        c = self.per_run(ctx, "clip_value")
        for p in ctx.run_params:
            b = per_run(c, p)
            torch.clamp(p, -b, b, out=p)
        return {}
