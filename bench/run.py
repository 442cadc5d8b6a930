"""From names and values to a resolved `RunConfig`, and from a `RunConfig` to a result.

`resolve` is the one place where a run's configuration is decided, in this order: defaults, the
data set's own defaults, each method's recipe (e.g. weight_clip's WGAN recipe), then the options
the user set explicitly; then the data set settles its evaluation choices (the feature extractor)
and checks its files. Names become classes and texts become typed values here, once; everything
downstream takes the resolved objects. Nothing is built, trained or written before it returns.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import Any

import torch

from bench.config import (
    MODEL_KINDS,
    ROLES,
    VECTOR_KINDS,
    MethodSpec,
    ModelSpec,
    RunConfig,
    TrainConfig,
)
from bench.datasets import dataset_registry
from bench.errors import ConfigError, NoOpMethod
from bench.members import Member, Population
from bench.methods import BASELINE, Method, method_registry
from bench.models import ARCHITECTURES, build_models
from bench.optim import role_rate
from bench.params import check_float32, from_texts, member_fields, typed_config, typed_values
from bench.resources import check_memory
from bench.trainer import RunResult, Trainer

MethodValues = list[tuple[str, dict[str, Any]]]  # [(method name, {param: value or text})]


def resolve_device(name: str) -> str:
    """`auto` -> cuda when available else cpu; a CUDA device that is not there is an error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not valid; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count or count == 0:
            raise ConfigError(f"device {name!r} is not available here ({count} CUDA devices)")
    elif dev.type != "cpu" or dev.index not in (None, 0):
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return str(dev)


def method_specs(methods: MethodValues) -> tuple[MethodSpec, ...]:
    """Validate [(name, {param: value})] into method specs; a method may appear once. Values
    may be typed (suites, sweeps) or text (the CLI's --set)."""
    names = [n for n, _ in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"method {dupes[0]!r} is given twice; give each method once")
    specs = []
    for name, values in methods:
        cls = method_registry.get(name)
        specs.append(MethodSpec(name, typed_config(cls.config_cls, values, name), cls))
    return tuple(specs)


def resolve(
    dataset: str,
    methods: MethodValues,
    train: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    data_root: str = "",
) -> RunConfig:
    """Build the validated, fully resolved config of one run: defaults, the data set's own
    defaults, each method's recipe, then the explicit options (which win)."""
    data_cls = dataset_registry.get(dataset)
    specs = method_specs(methods or [(BASELINE, {})])
    arch_train, arch_model = architecture_defaults(data_cls, dataset, (model or {}).get("kind"))
    train_cfg = _replace(TrainConfig(**data_cls.train_defaults()), arch_train, "train")
    for s in specs:
        train_cfg = s.cls.recipe(s.config, train_cfg)
    train_cfg = data_cls.settle(_replace(train_cfg, train or {}, "train"))
    check_rates(train_cfg)
    base = ModelSpec(**data_cls.model_defaults())
    spec = _replace(_replace(base, arch_model, "model"), model or {}, "model")
    for s in specs:
        before, spec = spec, s.cls.configure_models(s.config, spec)
        if (
            s.name != BASELINE
            and acts_only_on_models(s.cls)
            and models_text(before) == models_text(spec)
        ):
            raise NoOpMethod(
                f"method {s.name!r} changes nothing in {dataset}'s models (targets "
                f"{','.join(s.config.targets)}): its row would equal the baseline's; choose "
                "other targets or another data set"
            )
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed={seed!r} is not allowed; allowed: integers >= 0")
    cfg = RunConfig(dataset, specs, train_cfg, spec, seed, resolve_device(device), data_root,
                    data_cls)  # fmt: skip
    data_cls.check(cfg)  # missing or unfitting data fails here, before anything is written
    check_memory(cfg)
    return cfg


HOOKS = ("loss", "after_backward", "after_step")


def architecture_defaults(data_cls, dataset: str, kind: Any) -> tuple[dict, dict]:
    """(train, model) options a model kind brings (bench.models.ARCHITECTURES); a kind that
    does not fit the data (vectors vs images) is a one-line error."""
    default = data_cls.model_defaults().get("kind", "mlp")
    if kind is None or kind == default:
        return ARCHITECTURES.get(default, ({}, {}))
    if kind not in MODEL_KINDS:
        return {}, {}  # ModelSpec's validation names the allowed kinds
    if (kind in VECTOR_KINDS) != (default in VECTOR_KINDS):
        fits = [k for k in MODEL_KINDS if (k in VECTOR_KINDS) == (default in VECTOR_KINDS)]
        raise ConfigError(f"model {kind!r} does not fit {dataset}; allowed: {', '.join(fits)}")
    return ARCHITECTURES.get(kind, ({}, {}))


def acts_only_on_models(cls: type[Method]) -> bool:
    """A method that overrides no training hook acts only through the models it configures
    (layer norm, spectral norm): if they come out unchanged, it does nothing at all."""
    return all(getattr(cls, h) is getattr(Method, h) for h in HOOKS)


def models_text(spec: ModelSpec) -> str:
    """The built G and D as text (shapes only, on the meta device): equal text, equal models."""
    with torch.device("meta"):
        g, d = build_models(spec)
    return f"{g}\n{d}"


def _replace(obj: Any, values: dict[str, Any], owner: str) -> Any:
    try:
        return replace(obj, **typed_values(type(obj), values, owner))
    except TypeError as e:  # an unknown field name
        raise ConfigError(f"{owner}: {e}") from None


def load_data(cfg: RunConfig):
    """The run's data set, built from its resolved class and options."""
    return cfg.data_cls(
        device=cfg.device, data_root=cfg.data_root or None, extractor=cfg.train.extractor,
        inception_weights=cfg.train.inception_weights or None, image_size=cfg.model.image_size,
    )  # fmt: skip


def instantiate(cfg: RunConfig) -> list[Method]:
    """The run's method objects: one instance per method per run."""
    return [s.cls(s.config) for s in cfg.methods]


def execute(cfg: RunConfig, on_log=None, progress: bool = False, on_data=None) -> RunResult:
    """Build data, methods and models from `cfg`, train, evaluate: the population of one.
    `on_data(dataset)` is called once the data are loaded (the tracker records them)."""
    result = execute_population([cfg], [on_log], progress, on_data)[0]
    if result.error is not None:
        raise result.error  # what on_log raised (a pruned trial) ends the run, as it always did
    return result


def population_key(cfg: RunConfig) -> tuple:
    """What the members of one population share: everything but the seed, the training fields
    declared `member=True` (learning rates, Adam's betas) and the float values (thresholds,
    penalty weights) of methods that read them per run."""
    methods = tuple(
        (s.name, tuple((f.name, getattr(s.config, f.name)) for f in fields(s.config)
                       if not _per_run_field(s, f.name)))
        for s in cfg.methods
    )  # fmt: skip
    members = member_fields(TrainConfig)
    train = tuple((f.name, getattr(cfg.train, f.name)) for f in fields(cfg.train)
                  if f.name not in members)  # fmt: skip
    return (cfg.dataset, train, cfg.model, cfg.device, cfg.data_root, methods)


def _per_run_field(spec, name: str) -> bool:
    """A float value of a method whose hooks read it per run (`Method.PER_RUN`)."""
    return spec.cls.PER_RUN and type(getattr(spec.config, name)) is float


def execute_population(
    cfgs: list[RunConfig], on_logs=None, progress: bool = False, on_data=None, on_flush=None
) -> list[RunResult]:
    """Train the runs `cfgs` as one population of K (bench/population.py): each member is
    built from its own seed and trains on its own data and noise streams, so member i's result
    is the one `execute(cfgs[i])` gives (up to floating-point rounding). One result per config;
    a member whose `on_logs[i]` raised ends there with status `stopped` and the exception on its
    result (the others go on); `on_flush` is the population's own callback (bench/members.py)."""
    from bench.workers import set_run_threads

    first = cfgs[0]
    keys = {population_key(c) for c in cfgs}
    if len(keys) > 1:
        raise ConfigError(
            "a population's runs must share data, model, training options and method "
            "choices; only seeds, learning rates and method float values may differ"
        )
    if len(cfgs) > 1 and first.train.amp:
        raise ConfigError(
            "amp=true cannot train populations (one loss scaler would skip every run's "
            "step); use population 1 or amp=false"
        )
    check_memory(first, runs=len(cfgs))
    set_run_threads(first.model.kind, first.device)
    dataset = load_data(first)
    if on_data is not None:
        on_data(dataset)
    trainer = build_trainer(cfgs, dataset, on_logs, first.metrics, on_flush)
    return trainer.fit_all(progress=progress)


def build_trainer(cfgs: list[RunConfig], dataset, on_logs=None, metrics=None,
                  on_flush=None) -> Trainer:  # fmt: skip
    """The trainer of the population `cfgs` on `dataset`: members built from their own seeds,
    with their own method configs and training values."""
    members = []
    for c, on_log in zip(cfgs, on_logs or [None] * len(cfgs), strict=True):
        torch.manual_seed(c.seed)  # initialisation; data and noise have their own streams
        g, d = build_models(c.model)  # the methods' switches are already in cfg.model
        configs = tuple(m.config for m in c.methods)
        members.append(Member(c.seed, g, d, c.train, configs, on_log))
    first = cfgs[0]
    population = Population(tuple(members), first.model.z_dim, on_flush)
    return Trainer(population, dataset, instantiate(first), first.train, first.device, metrics)


def from_flat(flat: dict[str, str]) -> RunConfig:
    """Inverse of `bench.config.flatten` (names looked up in the registries here)."""

    def section(prefix: str) -> dict[str, str]:
        n = len(prefix) + 1
        return {k[n:]: v for k, v in flat.items() if k.startswith(prefix + ".")}

    specs = []
    for name in (n for n in flat.get("methods", "").split(",") if n):
        cls = method_registry.get(name)
        specs.append(MethodSpec(name, from_texts(cls.config_cls, section(f"method.{name}"), name),
                                cls))  # fmt: skip
    return RunConfig(
        dataset=flat["dataset"], methods=tuple(specs),
        train=from_texts(TrainConfig, section("train"), "train"),
        model=from_texts(ModelSpec, section("model"), "model"), seed=int(flat["seed"]),
        device=flat["device"], data_root=flat.get("data_root", ""),
        data_cls=dataset_registry.get(flat["dataset"]),
    )  # fmt: skip


def check_rates(train: TrainConfig) -> None:
    """The learning rates the optimizers get (rates x multiplier) are finite in float32."""
    for role in ROLES:
        check_float32(role_rate(train, role), f"{role} learning rate (rate x multiplier)", "train")


def with_params(cfg: RunConfig, params: dict[str, Any]) -> RunConfig:
    """`cfg` with its (single) method's searched parameters set to `params`, validated."""
    spec = cfg.methods[0]
    values = asdict(spec.config) | params
    config = typed_config(spec.cls.config_cls, values, spec.name)
    return replace(cfg, methods=(replace(spec, config=config),))
