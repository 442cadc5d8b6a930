"""Elementwise gradient value clipping, g <- clamp(g, -c, c).

The folk remedy of the seed article (c = 0.01 with Adam 2e-4, betas (0.5, 0.999)); the same
operation as `torch.nn.utils.clip_grad_value_`. Unlike norm clipping it changes the gradient's
direction. Logs the fraction of elements that were clamped.
"""

from dataclasses import dataclass

import torch

from bench.methods.base import Method, MethodConfig, register_method
from bench.metrics.gradients import per_run
from bench.params import Search, param


@dataclass(frozen=True)
class ValueClipConfig(MethodConfig):
    clip_value: float = param(
        0.01, low=0.0, low_open=True, search=Search(1e-4, 10.0), help="c in clamp(g, -c, c)"
    )


@register_method
class ValueClip(Method):
    config_cls = ValueClipConfig
    family = "gradient clipping"
    PER_RUN = True

    def after_backward(self, ctx):
        grads = ctx.run_grads
        if not grads:
            return {}
        c = self.per_run(ctx, "clip_value")
        bounds = [per_run(c, g) for g in grads]
        pairs = list(zip(grads, bounds, strict=True))
        stats = {}
        if ctx.stats:
            clamped = sum((g.abs() > b).flatten(1).sum(1) for g, b in pairs)
            stats["frac_clipped"] = clamped / sum(g[0].numel() for g in grads)
        for g, b in pairs:
            torch.clamp(g, -b, b, out=g)  # clip_grad_value_, with a bound per run
        return stats
