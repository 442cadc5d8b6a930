import pytest

from bench.config import flatten
from bench.errors import ConfigError
from bench.run import from_flat, resolve
from tests.conftest import tiny_config


def test_flatten_round_trips_through_from_flat():
    cfg = tiny_config([("norm_clip", {"max_norm": "0.5"}), ("layer_norm", {})], seed=7)
    flat = flatten(cfg)
    assert flat["method.norm_clip.max_norm"] == "0.5" and flat["train.lr_g"] == "0.0002"
    assert flat["model.layer_norm"] == "discriminator"
    assert all(isinstance(v, str) for v in flat.values())
    assert from_flat(flat) == cfg


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"dataset": "ring9"},
            "unknown dataset 'ring9'; choose one of: cifar10, digits, dirac, fashion-mnist, grid25",
        ),
        ({"methods": [("clipper", {})]}, "unknown method 'clipper'"),
        ({"methods": [("value_clip", {"clip_value": "-1"})]}, "clip_value=-1.0 is not allowed"),
        ({"methods": [("value_clip", {"clip_value": "abc"})]}, "'abc' is not a valid number"),
        ({"methods": [("norm_clip", {"radius": "1"})]}, "unknown parameter 'radius'"),
        ({"methods": [("norm_clip", {"scope": "net"})]}, "allowed: one of: global, layer"),
        ({"methods": [("none", {}), ("none", {})]}, "given twice"),
        ({"train": {"loss": "bce"}}, "loss='bce' is not allowed; allowed: one of: ns"),
        ({"train": {"steps": 0}}, "steps=0 is not allowed; allowed: >= 1"),
        ({"train": {"lr_g": 0.0}}, "lr_g=0.0 is not allowed"),
        ({"train": {"optimizer": "sgd", "beta1": 0.0}}, "Nesterov"),
        ({"device": "tpu"}, "device 'tpu'"),
        ({"device": "cuda:7"}, "not available"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_bad_input_raises_a_config_error_naming_the_value(kwargs, match):
    args = {"dataset": "ring8", "methods": [("none", {})]} | kwargs
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace("[", r"\[")):
        resolve(**args)
