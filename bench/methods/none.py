"""No stabilizer: the baseline every method is compared against (the seed recipe, unmodified)."""

from dataclasses import dataclass

from bench.methods.base import Method, MethodConfig, register_method


@dataclass(frozen=True)
class NoneConfig(MethodConfig):
    pass


@register_method
class NoOp(Method):
    config_cls = NoneConfig
    family = "baseline"
    PER_RUN = True
