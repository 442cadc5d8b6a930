"""Gradient norm clipping, g <- g * min(1, tau / (||g|| + 1e-6)).

Pascanu, Mikolov and Bengio 2013, "On the difficulty of training recurrent neural networks"
(arXiv 1211.5063), section 3.2. Same formula as `torch.nn.utils.clip_grad_norm_`. Scope `global`
takes one norm over the whole network (per role: G and D are never pooled); scope `layer` gives
each module's own parameters their own norm.
"""

from dataclasses import dataclass

import torch

from bench.methods.base import Method, MethodConfig, register_method
from bench.metrics.gradients import grads_of
from bench.params import Search, param


@dataclass(frozen=True)
class NormClipConfig(MethodConfig):
    max_norm: float = param(
        1.0, low=0.0, low_open=True, search=Search(1e-2, 1e2), help="tau, the norm cap"
    )
    scope: str = param("global", choices=("global", "layer"))


@register_method
class NormClip(Method):
    config_cls = NormClipConfig
    family = "gradient clipping"
    PER_RUN = True

    def _groups(self, ctx) -> list[list[torch.Tensor]]:
        """Parameter groups that share one norm: the whole network, or each module's own
        (listed once per role, in the role's state)."""
        if self.config.scope == "global":
            return [ctx.params]
        if "layers" not in ctx.state:
            groups = [list(m.parameters(recurse=False)) for m in ctx.model.modules()]
            ctx.state["layers"] = [g for g in groups if g]
        return ctx.state["layers"]

    def after_backward(self, ctx):
        tau = self.per_run(ctx, "max_norm")
        clipped = []
        for params in self._groups(ctx):
            grads = grads_of(params)
            norm = ctx.norms.norm(grads)
            clipped.append(norm > tau)
            ctx.norms.scale_to(grads, norm, tau)
        if not ctx.stats:
            return {}
        frac = clipped[0].float() if len(clipped) == 1 else torch.stack(clipped).float().mean(0)
        return {"frac_clipped": frac}
