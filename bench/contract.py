"""The method contract as a battery of checks: run by the test suite on every registered method
and by `python -m bench check NAME` on one (e.g. a method of another package). Each check takes
the method's class and raises AssertionError (or ConfigError) with a readable reason."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from bench.errors import ConfigError
from bench.methods import BASELINE, Method, MethodConfig, method_registry
from bench.methods.base import FAMILIES, UpdateContext, search_space
from bench.params import from_texts, to_text
from bench.run import execute, resolve

TINY_TRAIN = {"steps": 12, "batch_size": 32, "eval_every": 6, "log_every": 3,
              "eval_samples": 200, "layer_stats_every": 4}  # fmt: skip
TINY_MODEL = {"hidden": 16}
HOOKS = ("loss", "after_backward", "after_step")


def check_declaration(cls: type[Method]) -> None:
    """A Method subclass of a known family, with a frozen MethodConfig dataclass."""
    assert issubclass(cls, Method), f"{cls!r} is not a bench.methods.Method"
    assert cls.family in FAMILIES, f"family {cls.family!r} is not one of {FAMILIES}"
    assert issubclass(cls.config_cls, MethodConfig), "config_cls is not a MethodConfig"
    cfg = cls.config_cls()
    try:
        cfg.targets = ()
    except dataclasses.FrozenInstanceError:
        return
    raise AssertionError("its config is not frozen")


def check_acts(cls: type[Method]) -> None:
    """Anything but the baseline must do something: a hook, a recipe or a model switch."""
    if cls.name == BASELINE:
        return
    hooks = [h for h in HOOKS if getattr(cls, h) is not getattr(Method, h)]
    builds = cls.configure_models.__func__ is not Method.configure_models.__func__
    assert hooks or builds or cls.RECIPE, "overrides no hook, recipe or configure_models"


def check_text_round_trip(cls: type[Method]) -> None:
    """Its config survives the trip through MLflow params (text) unchanged."""
    cfg = cls.config_cls()
    texts = {k: to_text(v) for k, v in dataclasses.asdict(cfg).items()}
    assert from_texts(cls.config_cls, texts, cls.name) == cfg, "config changed through text"


def check_search_space(cls: type[Method]) -> None:
    """Both ends of every declared search range are valid values."""
    for pname, space in search_space(cls).items():
        for value in (space.low, space.high):
            cls.config_cls(**{pname: value})


def check_rejects_bad_targets(cls: type[Method]) -> None:
    """Empty or unknown roles are a ConfigError."""
    for bad in ((), ("critic",)):
        try:
            cls.config_cls(targets=bad)
        except ConfigError:
            continue
        raise AssertionError(f"targets={bad!r} was accepted")


def check_trains(cls: type[Method]) -> None:
    """12 CPU steps on ring8 with finite losses, gradient statistics and an evaluation."""
    result = execute(_tiny(cls.name))
    assert result.status == "finished" and result.steps == 12, f"ended {result.status}"
    losses = {k: v for _, m in result.history for k, v in m.items() if k.startswith("loss/")}
    assert losses and all(math.isfinite(v) for v in losses.values()), "non-finite losses"
    last = result.history[-1][1]
    assert "grad/generator/norm_pre" in last and "eval/modes" in last, "statistics missing"


def check_reproducible(cls: type[Method]) -> None:
    """Two runs with the same seed give the same metrics, bit for bit."""
    a, b = execute(_tiny(cls.name, steps=6)), execute(_tiny(cls.name, steps=6))
    assert a.metrics.keys() == b.metrics.keys()
    same = all(a.metrics[k] == b.metrics[k] or math.isnan(a.metrics[k]) for k in a.metrics)
    assert same, "seeded runs differ"


def check_state_reload(cls: type[Method]) -> None:
    """A role's state, saved by state_dict and rebuilt by load_state_dict in a fresh
    instance, acts exactly like the original."""
    method = cls()
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    gen = torch.Generator().manual_seed(0)
    role = method.config.targets[0]
    contexts = {r: UpdateContext.of(r, model) for r in method.config.targets}
    for step in range(30):
        model.zero_grad()
        (model(torch.randn(8, 3, generator=gen)) * (1 + step % 7)).pow(2).mean().backward()
        for ctx in contexts.values():
            method.after_backward(ctx)
    fresh = cls(method.config)
    state = fresh.load_state_dict(method.state_dict(contexts[role].state))
    reloaded = UpdateContext.of(role, model, state=state)
    model.zero_grad()
    model(torch.randn(8, 3, generator=gen)).pow(2).mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    out_a = method.after_backward(contexts[role])
    after_a = [p.grad.clone() for p in model.parameters()]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad.copy_(g)
    out_b = fresh.after_backward(reloaded)
    for p, g in zip(model.parameters(), after_a, strict=True):
        assert torch.allclose(p.grad, g), "the reloaded instance clips differently"
    assert out_a.keys() == out_b.keys(), "the reloaded instance reports other statistics"


def _tiny(name: str, **train):
    return resolve("ring8", [(name, {})], TINY_TRAIN | train, TINY_MODEL, 0, "cpu")


CHECKS: dict[str, Callable[[type[Method]], None]] = {
    "declaration": check_declaration,
    "acts": check_acts,
    "text round trip": check_text_round_trip,
    "search space": check_search_space,
    "bad targets": check_rejects_bad_targets,
    "trains": check_trains,
    "reproducible": check_reproducible,
    "state reload": check_state_reload,
}


def run_checks(name: str) -> list[tuple[str, bool, str]]:
    """(check, passed, reason) for every check of method `name`."""
    cls = method_registry.get(name)
    out = []
    for check, fn in CHECKS.items():
        try:
            fn(cls)
            out.append((check, True, ""))
        except Exception as e:  # a check's failure, whatever the method raised
            out.append((check, False, f"{type(e).__name__}: {e}".strip()))
    return out


__all__ = ["CHECKS", "run_checks"]
