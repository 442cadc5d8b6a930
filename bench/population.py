"""K runs as one set of batched tensors: the modules of a population and the conversions
between K ordinary models and one stacked model.

Every tensor of a population carries a leading run dimension K: activations are [K, B, ...],
a linear weight is [K, out, in] (a batched matmul), a layer norm's affine is per run, a batch
norm normalises K*C channels (per-run statistics) and spectral norm runs one power iteration per
run. Runs never mix: no operation reduces over the run dimension, so a member's numbers depend on
its own seed and values only, and one member's NaN stays in its own slice.

The ordinary run is the one-member population: `Single` views an ordinary model as taking and
returning [1, B, ...] tensors, so the trainer has one code path for both. `stack` builds the
stacked model from K ordinary ones (initialised with their own seeds, so member i starts exactly
where the ordinary run with seed i starts) and `member` copies member i back into an ordinary
model (evaluation, samples). Every model kind stacks: linear layers (maxout included, with or
without a bias) as batched matmuls, convs as grouped convs on K-major channels [B, K*C, H, W]
(DCGAN's stacked forward moves between that and [K, B, ...] at its ends), batch norm over K*C
channels, layer norm per run (GroupNorm(K, K*C) for convs), spectral norm with one power
iteration per run, and the Dirac-GAN's points as [K, dim].
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from bench.errors import ConfigError
from bench.models import DCGANDiscriminator, DCGANGenerator, Point


class Single(nn.Module):
    """An ordinary model as a one-member population: [1, B, ...] in, [1, B, ...] out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.squeeze(0)).unsqueeze(0)


class BatchedLinear(nn.Module):
    """K linear layers: x [K, B, in] -> x @ W^T + b with W [K, out, in], b [K, out] (or no
    bias, as the Dirac-GAN's critic)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = weight.shape[2], weight.shape[1]
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class BatchedPoint(Point):
    """K points, theta [K, dim]: z [K, B, z] -> [K, B, dim] (Point's own forward)."""


class BatchedLayerNorm(nn.Module):
    """K layer norms over the last dim, each with its own affine [K, C]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.eps = eps
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x, x.shape[-1:], None, None, self.eps)
        return y * self.weight.unsqueeze(1) + self.bias.unsqueeze(1)


class BatchedBatchNorm1d(nn.Module):
    """K batch norms as one over K*C channels: x [K, B, C] is normalised per (run, channel)
    over the batch (torch's kernel, channels K-major), with affine and running statistics
    [K, C] (the leading run dim every population tensor has)."""

    def __init__(self, weight, bias, mean, var, eps: float, momentum: float):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        self.register_buffer("running_mean", mean)
        self.register_buffer("running_var", var)
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, c = x.shape
        if self.training:
            self.num_batches_tracked.add_(1)
        y = F.batch_norm(
            x.permute(1, 0, 2).reshape(b, k * c), self.running_mean.view(-1),
            self.running_var.view(-1), self.weight.view(-1), self.bias.view(-1),
            self.training, self.momentum, self.eps,
        )  # fmt: skip
        return y.reshape(b, k, c).permute(1, 0, 2)


class BatchedConv(nn.Module):
    """K convs (or transposed convs) as one grouped conv on K-major channels: x [B, K*in, H,
    W] -> [B, K*out, H', W'], weight [K, out, in, kh, kw] ([K, in, out, kh, kw] transposed)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, like: nn.modules.conv._ConvNd):
        super().__init__()
        self.transposed = isinstance(like, nn.modules.conv._ConvTransposeNd)
        self.unit_dim = 1 if self.transposed else 0  # output units, as AGC counts them
        self.stride, self.padding = like.stride, like.padding
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.bias.shape[0]
        w, b = self.weight.flatten(0, 1), self.bias.flatten()
        if self.transposed:
            return F.conv_transpose2d(x, w, b, self.stride, self.padding, groups=k)
        return F.conv2d(x, w, b, self.stride, self.padding, groups=k)


class BatchedChannelNorm(nn.Module):
    """K batch norms (BatchNorm2d over K*C channels: per-run statistics) or K layer norms
    (GroupNorm(1, C) of each run as GroupNorm(K, K*C)) on K-major channels, affine [K, C]."""

    def __init__(self, like: nn.Module, weight, bias, mean=None, var=None):
        super().__init__()
        self.group = isinstance(like, nn.GroupNorm)
        self.eps, self.momentum = like.eps, getattr(like, "momentum", None)
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)
        if not self.group:
            self.register_buffer("running_mean", mean)
            self.register_buffer("running_var", var)
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight.flatten(), self.bias.flatten()
        if self.group:
            return F.group_norm(x, self.weight.shape[0], w, b, self.eps)
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1), w, b,
                            self.training, self.momentum, self.eps)  # fmt: skip


class BatchedSpectralNorm(nn.Module):
    """Spectral norm of a stacked weight [K, ...], one sigma per run: torch's parametrization
    on the stacked tensor would compute one sigma for all K runs. Same rule as
    `torch.nn.utils.parametrizations.spectral_norm` (the matrix: dim `dim` of a member's
    weight first, the rest flattened): in training mode `n` power iterations update u, v in
    place (no gradient), then W / (u^T W v)."""

    def __init__(self, u: torch.Tensor, v: torch.Tensor, n: int, eps: float, dim: int = 0):
        super().__init__()
        self.n, self.eps, self.dim = n, eps, dim
        self.register_buffer("_u", u)
        self.register_buffer("_v", v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        w = weight.movedim(self.dim + 1, 1).flatten(2)  # [K, rows, cols]
        if self.training:
            with torch.no_grad():
                for _ in range(self.n):
                    mv = torch.bmm(w, self._v.unsqueeze(2)).squeeze(2)
                    self._u = F.normalize(mv, dim=1, eps=self.eps, out=self._u)
                    mv = torch.bmm(w.transpose(1, 2), self._u.unsqueeze(2)).squeeze(2)
                    self._v = F.normalize(mv, dim=1, eps=self.eps, out=self._v)
        u, v = self._u.clone(), self._v.clone()
        sigma = (u * torch.bmm(w, v.unsqueeze(2)).squeeze(2)).sum(1)
        return weight / sigma.view(-1, *[1] * (weight.ndim - 1))


def _stack(tensors) -> torch.Tensor | None:
    """[K, ...] copies of K tensors; None for K absent ones (a linear layer without a bias)."""
    tensors = list(tensors)
    if tensors[0] is None:
        return None
    return torch.stack([t.detach() for t in tensors]).clone()


def _batched(layers: list[nn.Module]) -> nn.Module:
    """One batched module for K ordinary leaf modules of the same kind and shape."""
    first = layers[0]
    if isinstance(first, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
        return _batched_weights(layers)
    if type(first) is Point:
        return BatchedPoint(_stack(m.theta for m in layers))
    if isinstance(first, nn.LayerNorm):
        w, b = _stack(m.weight for m in layers), _stack(m.bias for m in layers)
        return BatchedLayerNorm(w, b, first.eps)
    tracked = getattr(first, "momentum", None) is not None and getattr(first, "affine", False)
    if type(first) in (nn.BatchNorm1d, nn.BatchNorm2d) and tracked:
        parts = ("weight", "bias", "running_mean", "running_var")
        stacked = [_stack(getattr(m, name) for m in layers) for name in parts]
        if type(first) is nn.BatchNorm1d:
            bn = BatchedBatchNorm1d(*stacked, first.eps, first.momentum)
        else:
            bn = BatchedChannelNorm(first, *stacked)
        bn.num_batches_tracked.copy_(first.num_batches_tracked)
        return bn
    if isinstance(first, nn.GroupNorm) and first.num_groups == 1 and first.affine:
        w, b = _stack(m.weight for m in layers), _stack(m.bias for m in layers)
        return BatchedChannelNorm(first, w, b)
    raise ConfigError(
        f"a population of {len(layers)} runs cannot stack {type(first).__name__} layers; "
        "population sizes above 1 support the mlp, pacgan, dcgan and dirac models"
    )


def _batched_weights(layers: list[nn.Module]) -> nn.Module:
    """A batched linear or conv layer, with its spectral norm (one sigma per run) if any."""
    first = layers[0]
    sn = parametrize.is_parametrized(first, "weight")
    weights = [m.parametrizations.weight.original if sn else m.weight for m in layers]
    w, b = _stack(weights), _stack(m.bias for m in layers)
    out = BatchedLinear(w, b) if isinstance(first, nn.Linear) else BatchedConv(w, b, first)
    if sn:
        p = first.parametrizations.weight[0]
        u = _stack(m.parametrizations.weight[0]._u for m in layers)
        v = _stack(m.parametrizations.weight[0]._v for m in layers)
        norm = BatchedSpectralNorm(u, v, p.n_power_iterations, p.eps, p.dim)
        parametrize.register_parametrization(out, "weight", norm, unsafe=True)
    return out


BATCHED = (BatchedLinear, BatchedConv, BatchedLayerNorm, BatchedBatchNorm1d, BatchedChannelNorm,
           BatchedPoint)  # fmt: skip
STACKED = (nn.Linear, nn.modules.conv._ConvNd, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d,
           nn.GroupNorm)  # fmt: skip


class _StackedDCGANGenerator(DCGANGenerator):
    """DCGAN's generator on K-major channels: z [K, B, z] -> images [K, B, C, H, W]."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k, b = z.shape[:2]
        x = self.project(z).transpose(0, 1).reshape(b, k * self.c0, self.base, self.base)
        x = torch.tanh(self.out(self.body(x)))  # [B, K*C, H, W]
        return x.unflatten(1, (k, -1)).transpose(0, 1)


class _StackedDCGANDiscriminator(DCGANDiscriminator):
    """DCGAN's critic on K-major channels: images [K, B, C, H, W] -> logits [K, B]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = x.shape[0]
        h = self.body(x.transpose(0, 1).flatten(1, 2))  # [B, K*C', h, w]
        h = h.unflatten(1, (k, -1)).flatten(2).transpose(0, 1)  # [K, B, C'*h*w]
        return self.out(h).squeeze(-1)


# Models whose forward reshapes: their stacked form has a population forward.
STACKED_FORWARD = {DCGANGenerator: _StackedDCGANGenerator,
                   DCGANDiscriminator: _StackedDCGANDiscriminator}  # fmt: skip


def stack(models: list[nn.Module]) -> nn.Module:
    """One stacked model from K ordinary models of the same architecture: the same module names
    (so methods find `out`, layer statistics keep their keys), every parameter [K, ...]."""
    if len(models) == 1:
        return Single(models[0])
    pop = copy.deepcopy(models[0])
    for name, module in list(pop.named_modules()):
        if not name or isinstance(module, parametrize.ParametrizationList):
            continue
        own = list(module.parameters(recurse=False)) or isinstance(module, STACKED)
        if not own or _inside_stacked(pop, name):
            continue
        parent, _, attr = name.rpartition(".")
        layers = [m.get_submodule(name) for m in models]
        setattr(pop.get_submodule(parent) if parent else pop, attr, _batched(layers))
    if type(pop) in STACKED_FORWARD:
        pop.__class__ = STACKED_FORWARD[type(pop)]  # same modules and names, batched forward
    return pop


def _inside_stacked(pop: nn.Module, name: str) -> bool:
    """Whether `name` lies inside a module that has already been replaced."""
    parts = name.split(".")
    for i in range(1, len(parts)):
        m = pop.get_submodule(".".join(parts[:i]))
        if isinstance(m, BATCHED):
            return True
    return False


@torch.no_grad()
def member(pop: nn.Module, template: nn.Module, i: int) -> nn.Module:
    """Member i of a stacked model copied into `template` (an ordinary model of the same
    architecture), which is returned. A `Single` population is its model."""
    if isinstance(pop, Single):
        return pop.model
    for name, module in pop.named_modules():
        if not isinstance(module, BATCHED):
            continue
        target = template.get_submodule(name)
        if parametrize.is_parametrized(module, "weight"):
            sn, tsn = module.parametrizations.weight[0], target.parametrizations.weight[0]
            target.parametrizations.weight.original.copy_(
                module.parametrizations.weight.original[i]
            )
            tsn._u.copy_(sn._u[i])
            tsn._v.copy_(sn._v[i])
        # Its own parameters (a parametrized weight lives in `parametrizations`, copied above):
        # weight and bias, a bias-free layer's weight alone, a point's theta.
        for pname, p in module.named_parameters(recurse=False):
            getattr(target, pname).copy_(p[i])
        if hasattr(module, "running_mean"):
            target.running_mean.copy_(module.running_mean[i])
            target.running_var.copy_(module.running_var[i])
            target.num_batches_tracked.copy_(module.num_batches_tracked)
    return template
