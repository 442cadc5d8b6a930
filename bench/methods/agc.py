"""Adaptive gradient clipping (AGC), unit-wise.

Brock, De, Smith and Simonyan 2021, "High-Performance Large-Scale Image Recognition Without
Normalization" (arXiv 2102.06171), section 4.1: for each output unit i of a weight W with
gradient G, if ||G_i|| / max(||W_i||, eps) > lambda then
G_i <- lambda max(||W_i||, eps) / ||G_i|| G_i.

Pitfalls handled here: the output unit is dim 0 for Linear and Conv weights but dim 1 for
ConvTranspose weights ([in, out, kH, kW]); vectors and scalars use their whole-tensor norm; the
final layer of D (module `out`) is excluded by module name, as the paper excludes the classifier.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from bench.methods.base import Method, MethodConfig, register_method
from bench.params import Search, param

OUTPUT_LAYER = "out"  # the name bench.models gives the last layer of G and D


@dataclass(frozen=True)
class AGCConfig(MethodConfig):
    clipping: float = param(0.01, low=0.0, low_open=True, search=Search(1e-3, 0.5), help="lambda")
    eps: float = param(1e-3, low=0.0, low_open=True)
    exclude_output: bool = param(True, help="leave D's final layer unclipped")


def unit_dim(module: nn.Module) -> int:
    """The dim of a weight that indexes output units."""
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    return 1 if transposed else 0


def unitwise_norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    """L2 norm over every dim but `dim` (keepdim); whole-tensor norm for vectors and scalars."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    dims = [d for d in range(x.ndim) if d != dim]
    return torch.linalg.vector_norm(x, dim=dims, keepdim=True)


def agc_(param: torch.Tensor, dim: int, clipping: float, eps: float) -> torch.Tensor:
    """Clip `param.grad` in place; returns the boolean mask of clipped units."""
    g = param.grad
    max_norm = unitwise_norm(param.detach(), dim).clamp_min(eps) * clipping
    g_norm = unitwise_norm(g, dim)
    over = g_norm > max_norm
    g.copy_(torch.where(over, g * (max_norm / g_norm.clamp_min(1e-6)), g))
    return over


def _own_params(m: nn.Module):
    """A module's direct parameters, with a parametrized weight's `original` (spectral norm)
    counted as the module's own, so it keeps the layer's unit dim."""
    yield from m.parameters(recurse=False)
    if parametrize.is_parametrized(m):
        for plist in m.parametrizations.values():
            yield from plist.parameters(recurse=False)


@register_method
class AGC(Method):
    config_cls = AGCConfig
    family = "adaptive clipping"

    def _units(self, ctx) -> list[tuple[torch.Tensor, int]]:
        """(parameter, unit dim) pairs, computed once per role by walking named modules."""
        if "units" not in ctx.state:
            skip = self.config.exclude_output and ctx.role == "discriminator"
            ctx.state["units"] = [
                (p, unit_dim(m))
                for name, m in ctx.model.named_modules()
                if not (skip and name == OUTPUT_LAYER)
                and not isinstance(m, parametrize.ParametrizationList)
                for p in _own_params(m)
                if p.requires_grad
            ]
        return ctx.state["units"]

    def after_backward(self, ctx):
        masks = [
            agc_(p, dim, self.config.clipping, self.config.eps)
            for p, dim in self._units(ctx)
            if p.grad is not None
        ]
        if not (ctx.stats and masks):
            return {}
        units = sum(m.numel() for m in masks)
        return {"frac_clipped": sum(m.sum() for m in masks) / units}
