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
from bench.metrics.gradients import per_run, run_views
from bench.params import Search, param

OUTPUT_LAYER = "out"  # the name bench.models gives the last layer of G and D


@dataclass(frozen=True)
class AGCConfig(MethodConfig):
    clipping: float = param(0.01, low=0.0, low_open=True, search=Search(1e-3, 0.5), help="lambda")
    eps: float = param(1e-3, low=0.0, low_open=True)
    exclude_output: bool = param(True, help="leave D's final layer unclipped")


def unit_dim(module: nn.Module) -> int:
    """The dim of a weight that indexes output units (a population's batched layers say)."""
    if hasattr(module, "unit_dim"):
        return module.unit_dim
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    return 1 if transposed else 0


def unitwise_norm(x: torch.Tensor, dim: int) -> torch.Tensor:
    """For x [K, ...] with a leading run dim: the L2 norm over every dim but the run dim and
    `dim` (keepdim); each run's whole-tensor norm for vectors and scalars."""
    if x.ndim <= 2:
        return torch.linalg.vector_norm(x.flatten(1), dim=1).view(-1, *[1] * (x.ndim - 1))
    dims = [d for d in range(1, x.ndim) if d != dim]
    return torch.linalg.vector_norm(x, dim=dims, keepdim=True)


def agc_(
    weight: torch.Tensor,
    grad: torch.Tensor,
    dim: int,
    clipping: torch.Tensor | float,
    eps: torch.Tensor | float,
) -> torch.Tensor:
    """Clip `grad` in place, both [K, ...] with units along `dim` (clipping and eps [K] or
    numbers); returns the boolean mask of clipped units."""
    if isinstance(clipping, torch.Tensor):
        clipping, eps = per_run(clipping, weight), per_run(eps, weight)
    max_norm = torch.clamp(unitwise_norm(weight.detach(), dim), min=eps) * clipping
    g_norm = unitwise_norm(grad, dim)
    over = g_norm > max_norm
    grad.copy_(torch.where(over, grad * (max_norm / g_norm.clamp_min(1e-6)), grad))
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
    PER_RUN = True

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
        lam, eps = self.per_run(ctx, "clipping"), self.per_run(ctx, "eps")
        masks = []
        for p, dim in self._units(ctx):
            if p.grad is not None:  # run views: the unit dim moves one to the right
                w, g = run_views([p, p.grad], ctx.stacked)
                masks.append(agc_(w, g, dim + 1, lam, eps))
        if not (ctx.stats and masks):
            return {}
        units = sum(m[0].numel() for m in masks)
        return {"frac_clipped": sum(m.flatten(1).sum(1) for m in masks) / units}
