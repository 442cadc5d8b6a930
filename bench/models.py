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
    g, d = (_mlps if spec.kind == "mlp" else _dcgans)(spec)
    nets = {"generator": g, "discriminator": d}
    for role in spec.spectral_norm:
        apply_spectral_norm(nets[role], spec.sn_power_iterations)
    return g, d


def _mlps(spec: ModelSpec) -> tuple[nn.Module, nn.Module]:
    h = spec.hidden
    g = MLP(
        [spec.z_dim] + [h] * spec.depth_g, spec.data_dim, nn.ReLU, "generator" in spec.layer_norm
    )
    width_d = max(1, round(h * spec.d_capacity))
    d = Critic(
        [spec.data_dim] + [width_d] * spec.depth_d, 1, _leaky, "discriminator" in spec.layer_norm
    )
    return g, d


def _stages(size: int) -> tuple[int, int]:
    """(base side, number of 2x upsamplings): 28 = 7 * 2^2, 32 = 4 * 2^3, 8 = 4 * 2."""
    base = 7 if size % 7 == 0 else 4
    return base, (size // base).bit_length() - 1


class DCGANGenerator(nn.Module):
    """z -> linear to [C0, b, b] -> (ConvTranspose 4/2/1, batch norm, ReLU)* -> `out`, tanh.
    Channels halve at each stage, from `hidden * 2^(stages-1)`."""

    def __init__(self, spec: ModelSpec, layer_norm: bool):
        super().__init__()
        base, n = _stages(spec.image_size)
        widths = [spec.hidden * 2 ** (n - 1 - i) for i in range(n)]
        self.base, self.c0 = base, widths[0]
        self.project = nn.Linear(spec.z_dim, widths[0] * base * base)
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        blocks["bn0"] = nn.BatchNorm2d(widths[0])
        blocks["act0"] = nn.ReLU()
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True), start=1):
            blocks[f"up{i}"] = nn.ConvTranspose2d(a, b, 4, 2, 1)
            blocks[f"bn{i}"] = nn.GroupNorm(1, b) if layer_norm else nn.BatchNorm2d(b)
            blocks[f"act{i}"] = nn.ReLU()
        self.body = nn.Sequential(blocks)
        self.out = nn.ConvTranspose2d(widths[-1], spec.channels, 4, 2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(-1, self.c0, self.base, self.base)
        return torch.tanh(self.out(self.body(x)))


class DCGANDiscriminator(nn.Module):
    """(Conv 4/2/1, LeakyReLU)* -> flatten -> linear `out`; no batch norm (WGAN-GP needs none).
    Layer norm is GroupNorm(1, C), never after the first conv nor on the output."""

    def __init__(self, spec: ModelSpec, layer_norm: bool):
        super().__init__()
        base, n = _stages(spec.image_size)
        width = max(1, round(spec.hidden * spec.d_capacity))
        widths = [width * 2**i for i in range(n)]
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        for i, c in enumerate(widths):
            blocks[f"conv{i}"] = nn.Conv2d(spec.channels if i == 0 else widths[i - 1], c, 4, 2, 1)
            if layer_norm and i > 0:
                blocks[f"ln{i}"] = nn.GroupNorm(1, c)
            blocks[f"act{i}"] = nn.LeakyReLU(0.2)
        self.body = nn.Sequential(blocks)
        self.out = nn.Linear(widths[-1] * base * base, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x).flatten(1)).squeeze(-1)


def _dcgans(spec: ModelSpec) -> tuple[nn.Module, nn.Module]:
    g = DCGANGenerator(spec, "generator" in spec.layer_norm)
    d = DCGANDiscriminator(spec, "discriminator" in spec.layer_norm)
    return g, d


def apply_spectral_norm(model: nn.Module, power_iterations: int) -> None:
    """Spectral-normalise every linear and conv layer of `model` in place."""
    layers = (nn.Linear, nn.modules.conv._ConvNd)
    for m in list(model.modules()):
        if isinstance(m, layers):
            torch.nn.utils.parametrizations.spectral_norm(m, n_power_iterations=power_iterations)
