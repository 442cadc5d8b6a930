"""The method contract: a hook object with no-op defaults, paired with a frozen config.

Call order inside the trainer, per role and per update (see bench/trainer.py):

    recipe(config, train)             at resolve time (class methods: no instance yet)
    configure_models(config, spec)    at resolve time, before G and D are built
    loop:
        terms = loss(terms, loss_ctx)     before backward (penalties add named terms)
        backward(sum(terms)); scaler.unscale_(opt)
        after_backward(ctx)               true gradients, before the step (gradient clipping)
        opt.step(); scaler.update()
        after_step(ctx)                   after the step (weight clipping)

Hooks receive everything they may use in an explicit context and nothing else: the role, its
model and parameters, the update's shared gradient-norm cache, whether statistics are on, the
step, the number of runs K the tensors hold (1 for an ordinary run), and `state`: this method's
own state for this role, which the trainer owns (a method instance keeps no per-role caches,
so one instance serves every role and a population's run dimension lives in the context).

One hook call serves all K runs of a population (bench/population.py): tensors carry a leading
run dim (`ctx.run_grads`, `ctx.run_params`, `LossContext.real`), numeric hyperparameters come
per run from `self.per_run(ctx, name)` as [K] tensors, and nothing may reduce over the run dim.
Hooks run only for the roles in `config.targets` (the trainer filters). They return a dict of
[K] tensors (clip rate, threshold, ...) that the trainer logs as `method/<name>/<role>/<key>`
for each run, kept on the device until the logging interval. Methods never import the tracker.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.errors import ConfigError
from bench.metrics.gradients import GradNorms, grads_of, run_views
from bench.params import ROLES, allowed_text, param, validate
from bench.registry import Registry
from bench.rng import Streams

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
class MemberValues:
    """A method's config of each of the K runs of a population (members may differ in numeric
    values: K thresholds, K trials; empty: the method's own config for every run), and each
    numeric field as a [K] tensor on the device, built once. The trainer makes one per (method,
    role); the role's update and loss contexts share it."""

    configs: tuple[MethodConfig, ...] = ()
    _tensors: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    def tensor(self, name: str, config: MethodConfig, like: torch.Tensor) -> torch.Tensor:
        if name not in self._tensors:
            values = [float(getattr(c, name)) for c in self.configs or (config,)]
            self._tensors[name] = torch.tensor(values, dtype=like.dtype, device=like.device)
        return self._tensors[name]


class PerRun:
    """Per-run hyperparameters of a context: `members` holds the method's config of each run,
    and `param(name, config)` is that field as a [K] tensor. Host-side fields (scope, window,
    targets) are the same for every member; hooks read them from `self.config`."""

    members: MemberValues

    @property
    def configs(self) -> tuple[MethodConfig, ...]:
        return self.members.configs

    def _like(self) -> torch.Tensor:
        raise NotImplementedError

    def param(self, name: str, config: MethodConfig) -> torch.Tensor:
        return self.members.tensor(name, config, self._like())


@dataclass
class LossContext(PerRun):
    """What a loss hook may use. Tensors carry the run dim: `real`, `fake` [K, B, ...] (`fake`
    is detached for D updates), `discriminator` maps [K, B, ...] to logits [K, B]; `noise`
    holds each run's own stream (draw with `rand`, so a run's draws do not depend on K).
    Penalty terms are per run, [K]."""

    real: torch.Tensor
    fake: torch.Tensor
    discriminator: nn.Module
    noise: Streams
    role: str = "discriminator"
    members: MemberValues = dataclasses.field(default_factory=MemberValues)

    def _like(self) -> torch.Tensor:
        return self.real

    def rand(self, *shape: int) -> torch.Tensor:
        """U[0, 1) of `shape` for each run from its own stream: [K, *shape]."""
        return self.noise.uniform(*shape, dtype=self.real.dtype)


@dataclass
class UpdateContext(PerRun):
    """What the gradient and weight hooks of one (method, role) see at each update. The
    trainer builds one per (method, role) and keeps it: `state` persists across updates.

    `params` and `grads` are the model's own tensors; `run_params` and `run_grads` the same
    tensors with a leading run dim [K, ...] (views of an ordinary model's tensors when K = 1),
    which is how a method works per run without knowing K. Statistics a hook returns are [K]
    (or one value for every run)."""

    role: str
    model: nn.Module
    params: list[torch.Tensor]  # the role's trainable parameters, listed once
    norms: GradNorms  # this update's per-run norm cache, shared with the trainer
    stats: bool = True  # statistics on (off only for the speed comparison)
    step: int = 0  # generator steps completed
    runs: int = 1  # K: runs the tensors hold along a leading dimension (1: an ordinary run)
    state: dict[str, Any] = dataclasses.field(default_factory=dict)  # the method's, per role
    members: MemberValues = dataclasses.field(default_factory=MemberValues)

    @property
    def stacked(self) -> bool:
        return self.norms.stacked

    @property
    def grads(self) -> list[torch.Tensor]:
        return grads_of(self.params)

    @property
    def run_grads(self) -> list[torch.Tensor]:
        return run_views(self.grads, self.stacked)

    @property
    def run_params(self) -> list[torch.Tensor]:
        return run_views(self.params, self.stacked)

    def _like(self) -> torch.Tensor:
        return self.params[0]

    @classmethod
    def of(cls, role: str, model: nn.Module, **fields: Any) -> UpdateContext:
        """A context outside the trainer (tests, other loops): an ordinary model (K = 1), its
        trainable parameters, and a norm cache that measures every time."""
        params = [p for p in model.parameters() if p.requires_grad]
        return cls(role, model, params, GradNorms(enabled=False), **fields)


class Method:
    """A stabilization method. Subclasses set `config_cls` and `family`, override hooks."""

    name: ClassVar[str]
    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    family: ClassVar[str] = "baseline"
    # The method's own training recipe (TrainConfig fields), applied by `recipe` unless the
    # config says `use_recipe=false`.
    RECIPE: ClassVar[dict[str, Any]] = {}
    # True when the hooks read every float config value through `per_run`, so that members of
    # one population may differ in them (K thresholds, K trials). False (the safe default for
    # a method written for single runs, reading `self.config`): members must share them.
    PER_RUN: ClassVar[bool] = False

    def __init__(self, config: MethodConfig | None = None):
        self.config = config if config is not None else self.config_cls()

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

    def per_run(self, ctx: PerRun, name: str) -> torch.Tensor:
        """Config field `name` of each run, [K] (the members' values in a population)."""
        return ctx.param(name, self.config)

    def loss(self, terms: dict[str, torch.Tensor], ctx: LossContext):
        return terms

    def after_backward(self, ctx: UpdateContext) -> dict[str, torch.Tensor]:
        return {}

    def after_step(self, ctx: UpdateContext) -> dict[str, torch.Tensor]:
        return {}

    def state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """`ctx.state` as plain tensors (a checkpoint); the default: nothing to keep."""
        return {}

    def load_state_dict(self, saved: dict[str, Any]) -> dict[str, Any]:
        """A `ctx.state` rebuilt from `state_dict`'s output."""
        return {}


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
