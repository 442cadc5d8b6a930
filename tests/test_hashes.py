"""Resume by (config hash, seed) survives the plan redesign: these hashes were computed by the
code before it (commit 848aed7), so runs recorded then are still found and skipped."""

import pytest

from bench.record import config_hash
from bench.run import resolve

RING8 = {"steps": 5000, "eval_every": 1000, "log_every": 100}
GRID25 = {"steps": 10000, "eval_every": 2000, "log_every": 100, "lr_g": 1e-3, "lr_d": 1e-3}
BEFORE = [
    (("ring8", [("none", {})], RING8, {}), "e65eaccdf642"),
    (("ring8", [("norm_clip", {"max_norm": 1.0})], RING8 | {"lr_mult": 10.0}, {}), "e9565f64ce07"),
    (("grid25", [("value_clip", {"clip_value": 0.01})], GRID25, {}), "8563b46c1b49"),
    (("ring8", [("weight_clip", {})], {"steps": 20}, {"hidden": 16}), "5c1c67e1b34c"),
    (("ring8", [("zclip", {})], {"beta1": 0.9}, {"depth_d": 6}), "5fe025150eb1"),
]


@pytest.mark.parametrize(("args", "expected"), BEFORE)
def test_config_hashes_of_2d_runs_are_unchanged(args, expected):
    assert config_hash(resolve(*args)) == expected
