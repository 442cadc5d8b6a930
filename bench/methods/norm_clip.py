"""Gradient norm clipping, g <- g * min(1, tau / (||g|| + 1e-6)).

Pascanu, Mikolov and Bengio 2013, "On the difficulty of training recurrent neural networks"
(arXiv 1211.5063), section 3.2. Same formula as `torch.nn.utils.clip_grad_norm_`. Scope `global`
takes one norm over the whole network (per role: G and D are never pooled); scope `layer` gives
each module's own parameters their own norm.
"""

from dataclasses import dataclass

import torch

from bench.methods.base import Method, MethodConfig, register_method
from bench.metrics.gradients import grads_of, scale_to_norm_, total_norm
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

    def after_backward(self, role, model):
        tau = self.config.max_norm
        if self.config.scope == "global":
            groups = [grads_of(list(model.parameters()))]
        else:
            groups = [grads_of(list(m.parameters(recurse=False))) for m in model.modules()]
            groups = [g for g in groups if g]
        clipped = []
        for grads in groups:
            norm = total_norm(grads)
            clipped.append(norm > tau)
            scale_to_norm_(grads, norm, tau)
        if not self.collect_stats:
            return {}
        frac = clipped[0] if len(clipped) == 1 else torch.stack(clipped).float().mean()
        return {"frac_clipped": frac}
