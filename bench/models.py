"""G and D builders. They take a `ModelSpec` and know no method: build-time switches (layer norm,
spectral norm) arrive as role names in the spec. The last layer of each network is the module
named `out` (AGC excludes D's by that name)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from bench.config import ModelSpec


class MLP(nn.Module):
    """Hidden blocks `body.fc<i>` [-> `body.ln<i>`] -> activation, then the linear `out`."""

    def __init__(self, sizes: list[int], out_dim: int, act: type[nn.Module], layer_norm: bool):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers[f"fc{i}"] = nn.Linear(a, b)
            if layer_norm:
                layers[f"ln{i}"] = nn.LayerNorm(b)
            layers[f"act{i}"] = act()
        self.body = nn.Sequential(layers)
        self.out = nn.Linear(sizes[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class Critic(MLP):
    """An MLP whose output is one logit per sample, shape (batch,)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).squeeze(-1)


def _leaky() -> nn.Module:
    return nn.LeakyReLU(0.2)


def build_models(spec: ModelSpec) -> tuple[nn.Module, nn.Module]:
    """(G, D) for `spec`; parameters are drawn from torch's global RNG (seed it first)."""
    h = spec.hidden
    g = MLP(
        [spec.z_dim] + [h] * spec.depth_g, spec.data_dim, nn.ReLU, "generator" in spec.layer_norm
    )
    d = Critic([spec.data_dim] + [h] * spec.depth_d, 1, _leaky, "discriminator" in spec.layer_norm)
    nets = {"generator": g, "discriminator": d}
    for role in spec.spectral_norm:
        apply_spectral_norm(nets[role], spec.sn_power_iterations)
    return g, d


def apply_spectral_norm(model: nn.Module, power_iterations: int) -> None:
    """Spectral-normalise every linear and conv layer of `model` in place."""
    layers = (nn.Linear, nn.modules.conv._ConvNd)
    for m in list(model.modules()):
        if isinstance(m, layers):
            torch.nn.utils.parametrizations.spectral_norm(m, n_power_iterations=power_iterations)
