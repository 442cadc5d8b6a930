"""Layer normalisation in D (and optionally G), switched on at build time.

Ba, Kiros and Hinton 2016, "Layer Normalization" (arXiv 1607.06450); used in critics by
Gulrajani et al. 2017 (WGAN-GP, arXiv 1704.00028, section 4) as a batch-norm-free normaliser.
MLPs get `nn.LayerNorm(features)` after each hidden linear layer; conv critics get
`nn.GroupNorm(1, C)` (per-sample over C, H, W with per-channel affine), never after the first
layer nor on the output. The models module does the building; this method only flips the switch.
"""

from dataclasses import dataclass, replace

from bench.methods.base import Method, MethodConfig, register_method
from bench.params import ROLES, param


@dataclass(frozen=True)
class LayerNormConfig(MethodConfig):
    targets: tuple[str, ...] = param(("discriminator",), choices=ROLES)


@register_method
class LayerNorm(Method):
    config_cls = LayerNormConfig
    family = "normalization"
    PER_RUN = True

    @classmethod
    def configure_models(cls, config, spec):
        return replace(spec, layer_norm=tuple(sorted(set(spec.layer_norm) | set(config.targets))))
