"""The method contract: a hook object with no-op defaults, paired with a frozen config.

Call order inside the trainer, per role and per update (see bench/trainer.py):

    recipe(config, train)             at resolve time (class methods: no instance yet)
    configure_models(config, spec)    at resolve time, before G and D are built
    loop:
        terms = loss(role, terms, ctx)    before backward (penalties add named terms)
        backward(sum(terms)); scaler.unscale_(opt)
        after_backward(role, model)       true gradients, before the step (gradient clipping)
        opt.step(); scaler.update()
        after_step(role, model)           after the step (weight clipping)

Hooks run only for the roles in `config.targets` (the trainer filters). They return a dict of
0-dim tensors (clip rate, threshold, ...) that the trainer logs as `method/<name>/<role>/<key>`,
kept on the device until the logging interval. Methods never import the tracker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.errors import ConfigError
from bench.metrics.gradients import GradNorms
from bench.params import ROLES, allowed_text, param, validate
from bench.registry import Registry

method_registry = Registry("method")
BASELINE = "none"  # the method every other is compared against (no-op)
ENTRY_POINT_GROUP = "gan_bench.methods"  # third-party methods: name = "pkg.module:MethodClass"

FAMILIES = (
    "baseline",
    "gradient clipping",
    "adaptive clipping",
    "weight clipping",
    "normalization",
    "penalty",
)


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method config: `targets` names the roles the method acts on."""

    method_name: ClassVar[str] = "method"
    targets: tuple[str, ...] = param(ROLES, choices=ROLES, help="roles the method acts on")

    def __post_init__(self) -> None:
        validate(self, self.method_name)
        if not self.targets:
            raise ConfigError(f"{self.method_name}: targets is empty; allowed: {', '.join(ROLES)}")


@dataclass
class LossContext:
    """What a loss hook may use. `fake` is detached for D updates; `noise` is the run's RNG."""

    real: torch.Tensor
    fake: torch.Tensor
    discriminator: nn.Module
    noise: torch.Generator


class Method:
    """A stabilization method. Subclasses set `config_cls` and `family`, override hooks."""

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    family: ClassVar[str] = "baseline"
    # The method's own training recipe (TrainConfig fields), applied by `recipe` unless the
    # config says `use_recipe=false`.
    RECIPE: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.config_cls()
        # The trainer switches this off for the "statistics off" speed comparison.
        self.collect_stats = True
        # Norms measured this update; the trainer shares one cache between itself and every
        # method (see GradNorms), a method on its own measures each time.
        self.norms = GradNorms(enabled=False)
        self._params: dict[str, list[torch.Tensor]] = {}

    def params(self, role: str, model: nn.Module) -> list[torch.Tensor]:
        """The trainable parameters of `model`, listed once per role (walking the module tree
        every update costs more than the clipping itself on small networks)."""
        if role not in self._params:
            self._params[role] = [p for p in model.parameters() if p.requires_grad]
        return self._params[role]

    @classmethod
    def configure_models(cls, config: MethodConfig, spec: Any) -> Any:
        """The ModelSpec with this method's build-time switches (layer norm, spectral norm)."""
        return spec

    @classmethod
    def recipe(cls, config: MethodConfig, train: Any) -> Any:
        """The TrainConfig with this method's own recipe (before the user's explicit options)."""
        if not cls.RECIPE or not getattr(config, "use_recipe", True):
            return train
        return dataclasses.replace(train, **cls.RECIPE)

    def loss(self, role: str, terms: dict[str, torch.Tensor], ctx: LossContext):
        return terms

    def after_backward(self, role: str, model: nn.Module) -> dict[str, torch.Tensor]:
        return {}

    def after_step(self, role: str, model: nn.Module) -> dict[str, torch.Tensor]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def register_method(cls: type[Method], name: str | None = None) -> type[Method]:
    """Register a method under `name` (default: its module's file name) and name its config
    after it. Used as a decorator by method modules."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"{cls!r} is not a Method subclass")
    method_registry.register(name)(cls)
    if cls.family not in FAMILIES:
        raise ValueError(f"{cls.name}: family {cls.family!r} not in {FAMILIES}")
    cls.config_cls.method_name = cls.name
    return cls


def create_method(name: str, **params: Any) -> Method:
    cls = method_registry.get(name)
    return cls(cls.config_cls(**params))


def describe(cls: type[Method]) -> list[tuple[str, Any, str, str, str]]:
    """(name, default, allowed, search range, help) for each parameter; used by `list`."""
    out = []
    for f in dataclasses.fields(cls.config_cls):
        s = f.metadata.get("search")
        searched = f"{'log' if s.log else 'uniform'}[{s.low:g}, {s.high:g}]" if s else ""
        out.append((f.name, f.default, allowed_text(f), searched, f.metadata.get("help", "")))
    return out


def search_space(cls: type[Method]) -> dict[str, Any]:
    """{param: Search} for the parameters the method declares searchable."""
    return {
        f.name: f.metadata["search"]
        for f in dataclasses.fields(cls.config_cls)
        if f.metadata.get("search") is not None
    }
