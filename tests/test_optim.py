"""The fast optimizer paths against the plain ones: torch's fused Adam and SGD (what the trainer
uses) and the per-span optimizer of members with their own rates, against torch's plain
for-loop implementations (`foreach=False`, no fusion), in float64, for every method."""

import dataclasses
import functools

import pytest

import bench.optim as optim
from bench.methods import method_registry
from tests.test_population import _configs, _max_diff, _train

TORCH_OPTIMIZER = optim.torch_optimizer  # the real one, kept before any test patches it


def _models(cfgs, monkeypatch, plain: bool):
    with monkeypatch.context() as m:
        if plain:
            m.setattr(optim, "torch_optimizer", functools.partial(TORCH_OPTIMIZER, fast=False))
        t, _ = _train(cfgs)
    return t


@pytest.mark.parametrize("name", method_registry.names())
def test_fused_optimizers_equal_the_plain_ones_in_float64(name, float64, monkeypatch):
    cfgs = _configs(name, 40)
    fast, plain = (_models(cfgs, monkeypatch, p) for p in (False, True))
    kinds = {type(r.opt).__name__ for r in fast.roles.values()}
    assert kinds <= {"Adam", "SGD", "RMSprop"}
    for role in fast.roles:
        opt = fast.roles[role].opt
        assert opt.defaults.get("fused") or type(opt).__name__ == "RMSprop"
    assert _max_diff(fast.G, plain.G) <= 1e-10 and _max_diff(fast.D, plain.D) <= 1e-10


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_spans_of_members_with_their_own_rates_equal_plain_optimizers(optimizer, float64,
                                                                      monkeypatch):  # fmt: skip
    """Members 0-1 at x1, 2 at x10, 3 at x1 again: three spans, each torch's own optimizer over
    its slices, equal to the plain per-span optimizers."""
    cfgs = []
    for c, mult in zip(_configs("norm_clip", 40), (1.0, 1.0, 10.0, 1.0), strict=True):
        train = dataclasses.replace(c.train, lr_mult=mult, optimizer=optimizer)
        cfgs.append(dataclasses.replace(c, train=train))
    fast, plain = (_models(cfgs, monkeypatch, p) for p in (False, True))
    opt = fast.roles["generator"].opt
    assert type(opt).__name__ == "PerRunOptimizer"
    assert [(w.start, w.stop) for w, _ in opt.parts] == [(0, 2), (2, 3), (3, 4)]
    assert _max_diff(fast.G, plain.G) <= 1e-10 and _max_diff(fast.D, plain.D) <= 1e-10


def test_spans_are_runs_of_equal_values():
    assert optim.spans([1, 1, 2, 2, 2, 1]) == [(0, 2), (2, 5), (5, 6)]
    assert optim.spans([3]) == [(0, 1)]
