"""The same battery for every registered method; a new method module is picked up untouched."""

import dataclasses
import math

import pytest

from bench.methods import method_registry
from bench.methods.base import FAMILIES, search_space
from bench.params import from_texts, to_text
from tests.conftest import tiny_config, tiny_run

METHODS = method_registry.names()


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_a_few_cpu_steps_with_finite_losses(name):
    result = tiny_run([(name, {})])
    assert result.status == "finished" and result.steps == 12
    losses = {
        k: v for _, logged in result.history for k, v in logged.items() if k.startswith("loss/")
    }
    assert losses and all(math.isfinite(v) for v in losses.values())
    assert all(k in result.history[-1][1] for k in ("grad/generator/norm_pre", "eval/modes"))


@pytest.mark.parametrize("name", METHODS)
def test_method_config_round_trips_through_text(name):
    cls = method_registry.get(name)
    cfg = cls.config_cls()
    texts = {k: to_text(v) for k, v in dataclasses.asdict(cfg).items()}
    assert from_texts(cls.config_cls, texts, name) == cfg
    assert dataclasses.is_dataclass(cfg) and cls.family in FAMILIES
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.targets = ()


@pytest.mark.parametrize("name", METHODS)
def test_method_search_space_lies_inside_its_valid_range(name):
    cls = method_registry.get(name)
    for pname, space in search_space(cls).items():
        for value in (space.low, space.high):
            cls.config_cls(**{pname: value})  # validates


@pytest.mark.parametrize("name", METHODS)
def test_method_state_reloads_into_a_fresh_instance(name):
    from bench.contract import check_state_reload

    check_state_reload(method_registry.get(name))


@pytest.mark.parametrize("name", METHODS)
def test_method_rejects_empty_and_unknown_targets(name):
    from bench.errors import ConfigError

    cls = method_registry.get(name)
    for bad in ((), ("critic",)):
        with pytest.raises(ConfigError):
            cls.config_cls(targets=bad)


def test_recipe_is_recorded_and_explicit_options_win():
    cfg = tiny_config([("weight_clip", {})])
    assert (cfg.train.loss, cfg.train.optimizer, cfg.train.n_critic) == (
        "wasserstein",
        "rmsprop",
        5,
    )
    assert cfg.train.recipe == "wgan" and cfg.train.lr_d == 5e-5
    shared = tiny_config([("weight_clip", {"use_recipe": "false"})])
    assert shared.train.recipe == "shared" and shared.train.loss == "ns"
    override = tiny_config([("weight_clip", {})], n_critic=2)
    assert override.train.n_critic == 2 and override.train.loss == "wasserstein"


IMAGE_TRAIN = {"steps": 4, "batch_size": 16, "eval_every": 4, "log_every": 2,
               "eval_samples": 60}  # fmt: skip


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_dcgan_models_on_digits(name):
    from bench.errors import NoOpMethod
    from bench.methods import method_registry
    from bench.run import acts_only_on_models, execute, resolve

    try:
        cfg = resolve("digits", [(name, {})], IMAGE_TRAIN, {"hidden": 8, "z_dim": 8}, 0, "cpu")
    except NoOpMethod:  # 8x8 critic: one conv, nothing for layer norm to normalise
        assert acts_only_on_models(method_registry.get(name))
        return
    result = execute(cfg)
    assert result.status == "finished"
    finite = {k: v for k, v in result.metrics.items() if math.isfinite(v)}
    assert {"eval/fd_digits_cnn", "eval/kid_digits_cnn", "eval/precision_digits_cnn"} <= set(finite)
