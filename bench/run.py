"""From names and strings to a resolved `RunConfig`, and from a `RunConfig` to a result.

`resolve` is where a run's configuration is decided, in this order: defaults, then each method's
recipe (e.g. weight_clip's WGAN recipe), then the options the user set explicitly. Everything is
validated here, before anything is built, trained or written.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from bench.config import MethodSpec, ModelSpec, RunConfig, TrainConfig
from bench.datasets import create_dataset, dataset_registry
from bench.errors import ConfigError
from bench.methods import Method, method_registry
from bench.models import build_models
from bench.params import from_texts
from bench.trainer import RunResult, Trainer


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
    elif dev.type != "cpu":
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return str(dev)


def method_specs(methods: list[tuple[str, dict[str, str]]]) -> tuple[MethodSpec, ...]:
    """Validate [(name, {param: text})] into method specs; a method may appear once."""
    names = [n for n, _ in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"method {dupes[0]!r} is given twice; give each method once")
    return tuple(
        MethodSpec(name, from_texts(method_registry.get(name).config_cls, params, name))
        for name, params in methods
    )


def instantiate(specs: tuple[MethodSpec, ...]) -> list[Method]:
    return [method_registry.get(s.name)(s.config) for s in specs]


def resolve(
    dataset: str,
    methods: list[tuple[str, dict[str, str]]],
    train: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    data_root: str = "",
) -> RunConfig:
    """Build the validated, fully resolved config of one run: defaults, the data set's own
    defaults, each method's recipe, then the explicit options (which win)."""
    data_cls = dataset_registry.get(dataset)
    specs = method_specs(methods or [("none", {})])
    objs = instantiate(specs)
    train_cfg = TrainConfig(**data_cls.train_defaults())
    for m in objs:
        train_cfg = m.recipe(train_cfg)
    train_cfg = _replace(train_cfg, train or {}, "train")
    spec = _replace(ModelSpec(**data_cls.model_defaults()), model or {}, "model")
    for m in objs:
        spec = m.configure_models(spec)
    if seed < 0:
        raise ConfigError(f"seed={seed} is not allowed; allowed: >= 0")
    cfg = RunConfig(dataset, specs, train_cfg, spec, seed, resolve_device(device), data_root)
    data_cls.check(cfg)  # missing or unfitting data fails here, before anything is written
    return cfg


def _replace(obj: Any, values: dict[str, Any], owner: str) -> Any:
    try:
        return replace(obj, **values)
    except TypeError as e:  # an unknown field name
        raise ConfigError(f"{owner}: {e}") from None


def execute(cfg: RunConfig, on_log=None, progress: bool = False, on_data=None) -> RunResult:
    """Build data, methods and models from `cfg`, train, evaluate. `on_data(dataset)` is called
    once the data are loaded (the tracker records their description)."""
    torch.manual_seed(cfg.seed)  # initialisation; data and noise have their own generators
    dataset = create_dataset(
        cfg.dataset, device=cfg.device, data_root=cfg.data_root or None,
        extractor=cfg.train.extractor, inception_weights=cfg.train.inception_weights or None,
        image_size=cfg.model.image_size,
    )  # fmt: skip
    if on_data is not None:
        on_data(dataset)
    methods = instantiate(cfg.methods)
    spec = cfg.model
    for m in methods:
        spec = m.configure_models(spec)
    g, d = build_models(spec)
    trainer = Trainer(
        g,
        d,
        dataset,
        methods,
        cfg.train,
        z_dim=spec.z_dim,
        seed=cfg.seed,
        device=cfg.device,
        on_log=on_log,
    )
    return trainer.fit(progress=progress)
