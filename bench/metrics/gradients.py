"""Gradient helpers shared by the trainer's statistics and the clipping methods.

Everything stays on the device: norms are 0-dim tensors and nothing here calls `.item()`, so a
training step never waits for the device.
"""

from __future__ import annotations

import torch
from torch import nn


def grads_of(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of a list of tensors (foreach kernels, no host sync)."""
    if not grads:
        return torch.zeros(())
    # Same value as torch.nn.utils.get_total_norm, without its per-call grouping overhead.
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def scale_to_norm_(grads: list[torch.Tensor], norm: torch.Tensor, max_norm: torch.Tensor | float):
    """Scale grads in place by min(1, max_norm / (norm + 1e-6)): `clip_grad_norm_`'s formula,
    but with a tensor threshold that never leaves the device."""
    if grads:
        coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        torch._foreach_mul_(grads, coef)


def layer_grad_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per-parameter gradient norm and gradient-to-weight norm ratio, keyed by parameter name."""
    named = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    if not named:
        return {}
    g_norms = torch._foreach_norm([p.grad for _, p in named])
    w_norms = torch._foreach_norm([p.detach() for _, p in named])
    out = {}
    for (name, _), g, w in zip(named, g_norms, w_norms, strict=True):
        out[f"{name}/grad_norm"] = g
        out[f"{name}/grad_to_weight"] = g / w.clamp_min(1e-12)
    return out
