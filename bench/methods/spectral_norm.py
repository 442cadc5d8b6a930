"""Spectral normalisation of every D layer, one power iteration per forward.

Miyato, Kataoka, Koyama and Yoshida 2018, "Spectral Normalization for Generative Adversarial
Networks" (arXiv 1802.05957), section 2.1. Built with
`torch.nn.utils.parametrizations.spectral_norm` by the models module; this method flips the switch.
"""

from dataclasses import dataclass, replace

from bench.methods.base import Method, MethodConfig, register_method
from bench.params import ROLES, param


@dataclass(frozen=True)
class SpectralNormConfig(MethodConfig):
    targets: tuple[str, ...] = param(("discriminator",), choices=ROLES)
    power_iterations: int = param(1, low=1)


@register_method
class SpectralNorm(Method):
    config_cls = SpectralNormConfig
    family = "normalization"
    PER_RUN = True

    @classmethod
    def configure_models(cls, config, spec):
        roles = tuple(sorted(set(spec.spectral_norm) | set(config.targets)))
        return replace(spec, spectral_norm=roles, sn_power_iterations=config.power_iterations)
