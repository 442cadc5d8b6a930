"""G and D builders. They take a `ModelSpec` and know no method: build-time switches (layer norm,
spectral norm) arrive as role names in the spec. The last layer of each network is the module
named `out` (AGC excludes D's by that name).

Kinds: `mlp` (2-D data, the calibrated CPU default), `pacgan` (2-D data: PacGAN's released
architecture, for long runs; its recipe in ARCHITECTURES), `dcgan` (images), `dirac` (the
Dirac-GAN of Mescheder et al. 2018: G a point, D linear; a known-answer control).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from bench.config import ModelSpec

# Options a model kind brings with it, applied after the data set's defaults and before method
# recipes and the user's options: PacGAN's released 2-D configuration (Lin et al. 2018): G 4 x
# 400 with batch norm and ReLU, D 3 maxout layers of 200 units (5 pieces), weights N(0, 0.02),
# biases 0, Adam lr 1e-4, beta1 0.8, batch 100. It trained 400,000 updates; its GAN row
# converged while dropping modes (ring8 6.3 modes at 98.2 % HQ, grid25 17.3 at 94.8 %).
ARCHITECTURES: dict[str, tuple[dict, dict]] = {
    "pacgan": (
        {"lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.8, "beta2": 0.999, "batch_size": 100},
        {"hidden": 400, "depth_g": 4, "depth_d": 3, "d_capacity": 0.5},
    ),
}
MAXOUT_PIECES = 5


class Maxout(nn.Module):
    """A linear map to `units * pieces`, then the max over each unit's pieces."""

    def __init__(self, in_dim: int, units: int, pieces: int = MAXOUT_PIECES):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.fc = nn.Linear(in_dim, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).unflatten(-1, (self.units, self.pieces)).amax(-1)


Norm = tuple[str, Callable[[int], nn.Module]]  # (module name prefix, factory of width)


class MLP(nn.Module):
    """Hidden blocks `body.fc<i>` [-> a norm, e.g. `body.ln<i>`] [-> activation], then the
    linear `out`. `layer` builds each hidden layer (nn.Linear, or Maxout: its own activation)."""

    def __init__(
        self,
        sizes: list[int],
        out_dim: int,
        act: type[nn.Module] | None,
        norm: Norm | None = None,
        layer: Callable[..., nn.Module] = nn.Linear,
    ):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers[f"fc{i}"] = layer(a, b)
            if norm is not None:
                layers[f"{norm[0]}{i}"] = norm[1](b)
            if act is not None:
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


LAYER_NORM: Norm = ("ln", nn.LayerNorm)


def build_models(spec: ModelSpec) -> tuple[nn.Module, nn.Module]:
    """(G, D) for `spec`; parameters are drawn from torch's global RNG (seed it first)."""
    builders = {"mlp": _mlps, "pacgan": _pacgans, "dcgan": _dcgans, "dirac": _diracs}
    g, d = builders[spec.kind](spec)
    nets = {"generator": g, "discriminator": d}
    for role in spec.spectral_norm:
        apply_spectral_norm(nets[role], spec.sn_power_iterations)
    return g, d


def _mlps(spec: ModelSpec) -> tuple[nn.Module, nn.Module]:
    h = spec.hidden
    g_norm = LAYER_NORM if "generator" in spec.layer_norm else None
    d_norm = LAYER_NORM if "discriminator" in spec.layer_norm else None
    g = MLP([spec.z_dim] + [h] * spec.depth_g, spec.data_dim, nn.ReLU, g_norm)
    width_d = max(1, round(h * spec.d_capacity))
    d = Critic([spec.data_dim] + [width_d] * spec.depth_d, 1, _leaky, d_norm)
    return g, d


def _pacgans(spec: ModelSpec) -> tuple[nn.Module, nn.Module]:
    """PacGAN's 2-D networks: G with batch norm and ReLU (layer norm in its place when asked),
    D of maxout layers (layer norm after each when asked); N(0, 0.02) weights, zero biases."""
    h = spec.hidden
    g_norm = LAYER_NORM if "generator" in spec.layer_norm else ("bn", nn.BatchNorm1d)
    g = MLP([spec.z_dim] + [h] * spec.depth_g, spec.data_dim, nn.ReLU, g_norm)
    width_d = max(1, round(h * spec.d_capacity))
    d_norm = LAYER_NORM if "discriminator" in spec.layer_norm else None
    d = Critic([spec.data_dim] + [width_d] * spec.depth_d, 1, None, d_norm, Maxout)
    for m in (*g.modules(), *d.modules()):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
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


class Point(nn.Module):
    """A learned point `theta` [dim]: every input row maps to it, [..., z] -> [..., dim]. The
    same forward serves a population's stacked points [K, dim] (bench/population.py)."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.theta = nn.Parameter(theta)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # A copy, not the expanded view: a view of a parameter requires grad even under
        # no_grad, and evaluation samples must not (they are saved as numpy arrays).
        return self.theta.unsqueeze(-2).expand(*z.shape[:-1], self.theta.shape[-1]).clone()


class DiracGenerator(nn.Module):
    """The Dirac-GAN's generator: G(z) = theta for every noise sample (`out` holds theta)."""

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.out = Point(theta)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z)


class DiracCritic(nn.Module):
    """The Dirac-GAN's discriminator: D(x) = psi . x, linear without a bias (`out.weight` is
    psi, [1, dim]), one logit per sample."""

    def __init__(self, psi: torch.Tensor):
        super().__init__()
        self.out = nn.Linear(psi.numel(), 1, bias=False)
        with torch.no_grad():
            self.out.weight.copy_(psi.view(1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(x).squeeze(-1)


def _diracs(spec: ModelSpec) -> tuple[nn.Module, nn.Module]:
    """The Dirac-GAN (Mescheder, Geiger and Nowozin 2018, section 2.2), started at a uniform
    random point of the unit sphere in (theta, psi): for 1-D data a seed-dependent angle on the
    unit circle around the equilibrium (0, 0), so seeds are different initialisations at the
    same distance."""
    v = torch.randn(2 * spec.data_dim)
    v = v / torch.linalg.vector_norm(v)
    return DiracGenerator(v[: spec.data_dim].clone()), DiracCritic(v[spec.data_dim :].clone())


def apply_spectral_norm(model: nn.Module, power_iterations: int) -> None:
    """Spectral-normalise every linear and conv layer of `model` in place."""
    layers = (nn.Linear, nn.modules.conv._ConvNd)
    for m in list(model.modules()):
        if isinstance(m, layers):
            torch.nn.utils.parametrizations.spectral_norm(m, n_power_iterations=power_iterations)
