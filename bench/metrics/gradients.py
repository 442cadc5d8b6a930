"""Gradient helpers shared by the trainer's statistics and the clipping methods.

Everything stays on the device: norms are [K] tensors (one per run) and nothing here calls
`.item()`, so a training step never waits for the device.
"""

from __future__ import annotations

import torch
from torch import nn


def grads_of(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def run_views(tensors: list[torch.Tensor], stacked: bool) -> list[torch.Tensor]:
    """The tensors with a leading run dim: themselves when stacked ([K, ...]), else views
    [1, ...] (in-place edits of a view edit the tensor)."""
    return tensors if stacked else [t.unsqueeze(0) for t in tensors]


def per_run(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[K] values shaped to broadcast against `like` [K, ...]."""
    return values.view(-1, *([1] * (like.ndim - 1)))


def total_norm(grads: list[torch.Tensor], stacked: bool = False) -> torch.Tensor:
    """Global L2 norm per run, [K] (K = 1 unless `stacked`): foreach kernels, no host sync."""
    if not grads:
        return torch.zeros(1)
    if not stacked:  # same value as torch.nn.utils.get_total_norm, without its grouping
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).reshape(1)
    per_tensor = [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]
    return torch.linalg.vector_norm(torch.stack(per_tensor), dim=0)


def scale_to_norm_(
    grads: list[torch.Tensor],
    norm: torch.Tensor,
    max_norm: torch.Tensor | float,
    stacked: bool = False,
) -> torch.Tensor:
    """Scale grads in place by min(1, max_norm / (norm + 1e-6)) per run: `clip_grad_norm_`'s
    formula, with tensor thresholds that never leave the device. Returns the factors [K]."""
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    if grads and stacked:
        torch._foreach_mul_(grads, [per_run(coef, g) for g in grads])
    elif grads:
        torch._foreach_mul_(grads, coef.reshape(()))
    return coef


class GradNorms:
    """Global gradient norms of the current update, per run ([K]), shared by the trainer's
    statistics and the norm-based clippers, so that the same gradients are never measured
    twice. `stacked`: the gradients carry a leading run dim (a population of K > 1).

    An entry is valid while its gradients are unchanged: the key holds each tensor's identity
    and in-place version counter, so a method that edits gradients without going through
    `scale_to` just causes a fresh measurement. The trainer calls `new_update()` after every
    backward, since a freed gradient's identity can be reused. Disabled (what a method has
    outside the trainer), every call measures.
    """

    def __init__(self, enabled: bool = True, stacked: bool = False):
        self.enabled, self.stacked = enabled, stacked
        self._known: dict[tuple, torch.Tensor] = {}

    def new_update(self) -> None:
        self._known.clear()

    @staticmethod
    def _key(grads: list[torch.Tensor]) -> tuple:
        return tuple((id(g), g._version) for g in grads)

    def norm(self, grads: list[torch.Tensor]) -> torch.Tensor:
        if not self.enabled:
            return total_norm(grads, self.stacked)
        key = self._key(grads)
        if key not in self._known:
            self._known[key] = total_norm(grads, self.stacked)
        return self._known[key]

    def scale_to(
        self, grads: list[torch.Tensor], norm: torch.Tensor, max_norm: torch.Tensor | float
    ) -> torch.Tensor:
        """`scale_to_norm_`, remembering the norm it leaves (norm x factor: exact up to
        rounding, and no second pass over the gradients). Returns that norm."""
        post = norm * scale_to_norm_(grads, norm, max_norm, self.stacked)
        if self.enabled:
            self._known[self._key(grads)] = post
        return post


def layer_grad_stats(model: nn.Module, stacked: bool = False) -> dict[str, torch.Tensor]:
    """Per-parameter gradient norm and gradient-to-weight norm ratio, keyed by parameter name
    (per run when `stacked`)."""
    named = [(n, p) for n, p in model.named_parameters() if p.grad is not None]
    if not named:
        return {}
    if stacked:
        g_norms = [torch.linalg.vector_norm(p.grad.flatten(1), dim=1) for _, p in named]
        w_norms = [torch.linalg.vector_norm(p.detach().flatten(1), dim=1) for _, p in named]
    else:
        g_norms = torch._foreach_norm([p.grad for _, p in named])
        w_norms = torch._foreach_norm([p.detach() for _, p in named])
    out = {}
    for (name, _), g, w in zip(named, g_norms, w_norms, strict=True):
        out[f"{name}/grad_norm"] = g
        out[f"{name}/grad_to_weight"] = g / w.clamp_min(1e-12)
    return out
