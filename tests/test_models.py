"""Named model kinds: PacGAN's 2-D architecture (`--model pacgan`) as published, with its
recipe applied under the user's options and method recipes."""

import pytest
import torch
from torch import nn

from bench.__main__ import main
from bench.errors import ConfigError
from bench.methods import method_registry
from bench.models import Maxout, build_models
from bench.run import execute, resolve


def test_maxout_is_the_max_over_each_units_pieces():
    torch.manual_seed(0)
    m = Maxout(3, 4, pieces=5)
    x = torch.randn(6, 3)
    expected = (x @ m.fc.weight.T + m.fc.bias).view(6, 4, 5).max(-1).values
    torch.testing.assert_close(m(x), expected)


def test_pacgan_networks_are_the_published_ones():
    cfg = resolve("ring8", [("none", {})], model={"kind": "pacgan"})
    torch.manual_seed(0)
    g, d = build_models(cfg.model)
    g_linear = [m for m in g.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in g_linear] == [400] * 4 + [2]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in g.modules()) == 4
    maxouts = [m for m in d.modules() if isinstance(m, Maxout)]
    assert [(m.units, m.pieces) for m in maxouts] == [(200, 5)] * 3
    assert not any(isinstance(m, nn.BatchNorm1d) for m in d.modules())
    weights = torch.cat([m.weight.flatten() for m in (*g_linear, *maxouts[0].modules())
                         if isinstance(m, nn.Linear)])  # fmt: skip
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(float(m.bias.detach().abs().max()) == 0 for m in g_linear)
    assert d(torch.randn(7, 2)).shape == (7,) and g(torch.randn(7, 2)).shape == (7, 2)
    t = cfg.train
    assert (t.lr_g, t.lr_d, t.beta1, t.batch_size) == (1e-4, 1e-4, 0.8, 100)


def test_user_options_and_method_recipes_win_over_the_architectures_recipe():
    cfg = resolve("ring8", [("none", {})], {"batch_size": 50}, {"kind": "pacgan", "hidden": 64})
    assert (cfg.train.batch_size, cfg.model.hidden, cfg.model.depth_g) == (50, 64, 4)
    wgan = resolve("ring8", [("weight_clip", {})], model={"kind": "pacgan"})
    assert (wgan.train.optimizer, wgan.train.lr_d) == ("rmsprop", 5e-5)
    assert resolve("ring8", [("none", {})]).model.hidden == 128  # mlp stays the default


def test_a_kind_that_does_not_fit_the_data_is_one_line_exit_2(capsys):
    with pytest.raises(ConfigError, match="'pacgan' does not fit digits; allowed: dcgan"):
        resolve("digits", [("none", {})], model={"kind": "pacgan"})
    assert main(["run", "--dataset", "ring8", "--model", "resnet", "--no-track"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resnet" in err[0] and "pacgan" in err[0]


@pytest.mark.parametrize("name", method_registry.names())
def test_every_method_trains_on_the_pacgan_networks(name):
    train = {"steps": 3, "batch_size": 16, "eval_every": 3, "log_every": 3, "eval_samples": 100}
    cfg = resolve("ring8", [(name, {})], train, {"kind": "pacgan", "hidden": 16}, 0, "cpu")
    result = execute(cfg)
    assert result.status == "finished" and "eval/mode_tv" in result.metrics
