"""The population contract: K runs trained as one set of batched tensors equal K ordinary runs.

For every registered method (a new method module is picked up with no edit here): a K = 4
population with different seeds and thresholds equals 4 ordinary runs in float64 to 1e-8, and in
float32 to 1e-5 over the first 10 steps; a diverging member leaves the others bitwise unchanged.
"""

import dataclasses

import pytest
import torch
from torch import nn

from bench.config import ModelSpec
from bench.datasets import create_dataset
from bench.errors import ConfigError, NoOpMethod
from bench.members import Member, Population
from bench.methods import method_registry, search_space
from bench.models import build_models
from bench.population import BatchedSpectralNorm, member, stack
from bench.population import _batched as stack_leaf
from bench.run import build_trainer, execute_population, load_data, resolve
from bench.trainer import Trainer
from tests.conftest import tiny_config

SEEDS = (3, 0, 7, 1)
STEPS_64 = 200


def _configs(name: str, steps: int, model: dict | None = None) -> list:
    """One config per member: its own seed and, where the method has a searched float, its own
    value of it (spread over the search range), so the [K] hyperparameters are exercised."""
    cls = method_registry.get(name)
    space = {k: s for k, s in search_space(cls).items()
             if cls.PER_RUN and type(getattr(cls.config_cls(), k)) is float}  # fmt: skip
    train = {"steps": steps, "batch_size": 16, "eval_every": steps, "log_every": 10,
             "eval_samples": 100, "layer_stats_every": 7}  # fmt: skip
    if cls.RECIPE.get("critic_schedule") == "wgan":
        train["critic_schedule"] = "fixed"  # 100 critic updates per early step: too slow here
    out = []
    for i, seed in enumerate(SEEDS):
        values = {k: s.low * (s.high / s.low) ** (i / 3) if s.log else s.low + (s.high - s.low)
                  * i / 3 for k, s in space.items()}  # fmt: skip
        out.append(resolve("ring8", [(name, values)], train, {"hidden": 8, **(model or {})},
                           seed=seed))  # fmt: skip
    return out


def _train(cfgs, metrics=None):
    """The trainer of `cfgs` as one population (what execute_population builds), trained."""
    t = build_trainer(cfgs, load_data(cfgs[0]), metrics=metrics)
    return t, t.fit_all()


def _members(cfgs, metrics=None):
    """(population results and member models, [(ordinary result, G, D)])."""
    t, pop = _train(cfgs, metrics)
    pop_models = [(member(t.G, t.g_members[i], i), member(t.D, t.d_members[i], i))
                  for i in range(len(cfgs))]  # fmt: skip
    singles = []
    for c in cfgs:
        one, (result,) = _train([c], metrics)
        singles.append((result, one.G, one.D))
    return pop, pop_models, singles


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].numel())


def _check_equal(cfgs, tol, metrics=None):
    pop, pop_models, singles = _members(cfgs, metrics)
    for (result, g, d), p, (pg, pd) in zip(singles, pop, pop_models, strict=True):
        assert p.status == result.status and p.steps == result.steps
        assert _max_diff(pg, g) <= tol and _max_diff(pd, d) <= tol
        losses = [k for k in result.history[0][1] if k.startswith(("loss/", "grad/"))]
        for (s1, m1), (s2, m2) in zip(result.history, p.history, strict=True):
            assert s1 == s2
            for k in losses:
                assert m2[k] == pytest.approx(m1[k], rel=1e-6, abs=1e-9), k


@pytest.mark.parametrize("name", method_registry.names())
def test_population_equals_ordinary_runs_in_float64(name, float64):
    _check_equal(_configs(name, STEPS_64), 1e-8)


@pytest.mark.parametrize("name", method_registry.names())
def test_population_equals_ordinary_runs_in_float32_first_steps(name):
    _check_equal(_configs(name, 10), 1e-5)


@pytest.mark.parametrize(("name", "optimizer"), [("none", "adam"), ("weight_clip", "rmsprop"),
                                                  ("norm_clip", "sgd")])  # fmt: skip
def test_members_at_their_own_learning_rates_equal_ordinary_runs(name, optimizer, float64):
    """The stability map's learning-rate multiples in one population: a per-run optimizer
    (bench/optim.py) with torch's update rules, Adam, RMSprop (WGAN's recipe) and SGD."""
    cfgs = []
    for c, mult in zip(_configs(name, 100), (1.0, 3.0, 0.5, 10.0), strict=True):
        train = dataclasses.replace(c.train, lr_mult=mult, optimizer=optimizer)
        cfgs.append(dataclasses.replace(c, train=train))
    t, _ = _train(cfgs)
    assert type(t.roles["generator"].opt).__name__ == "PerRunOptimizer"
    _check_equal(cfgs, 1e-8)


MEMBER_VALUES = {  # each member-level training field, four members' values
    "lr_g": (2e-4, 5e-4, 1e-4, 1e-3), "lr_d": (2e-4, 1e-3, 5e-5, 3e-4),
    "lr_mult": (1.0, 3.0, 0.5, 10.0), "beta1": (0.5, 0.0, 0.9, 0.7),
    "beta2": (0.999, 0.9, 0.99, 0.95),
}  # fmt: skip


def test_every_member_field_has_an_equivalence_test():
    from bench.config import TrainConfig
    from bench.params import member_fields

    assert set(member_fields(TrainConfig)) == set(MEMBER_VALUES)


@pytest.mark.parametrize(
    ("field", "optimizer"),
    [*((f, "adam") for f in MEMBER_VALUES), ("beta1", "sgd"), ("lr_d", "rmsprop")],
)
def test_members_differing_in_a_member_field_equal_ordinary_runs(field, optimizer, float64):
    """Seeds and thresholds differ too (`_configs`); here each member also has its own value of
    one member-level training field, and the population equals K ordinary runs."""
    cfgs = []
    for c, value in zip(_configs("norm_clip", 60), MEMBER_VALUES[field], strict=True):
        if optimizer == "sgd" and field == "beta1":
            value = value or 0.3  # Nesterov needs momentum > 0
        train = dataclasses.replace(c.train, optimizer=optimizer, **{field: value})
        cfgs.append(dataclasses.replace(c, train=train))
    t, _ = _train(cfgs)
    role = "discriminator" if field == "lr_d" else "generator"
    assert type(t.roles[role].opt).__name__ == "PerRunOptimizer"
    _check_equal(cfgs, 1e-8)


@pytest.mark.parametrize("name", ["none", "spectral_norm", "layer_norm"])
def test_pacgan_population_batch_norm_and_maxout_per_run(name, float64):
    model = {"kind": "pacgan", "hidden": 8, "depth_g": 2, "depth_d": 2}
    cfgs = [dataclasses.replace(c, train=dataclasses.replace(c.train, batch_size=16))
            for c in _configs(name, 30, model)]  # fmt: skip
    _check_equal(cfgs, 1e-8)


@pytest.mark.parametrize("name", method_registry.names())
def test_dcgan_population_grouped_convs_equal_ordinary_runs_in_float64(name, float64):
    """Grouped convs on K-major channels, batch norm over K*C, per-run spectral norm of conv
    and transposed-conv weights, every method; 20 steps (convs cost CI time). Layer norm
    changes nothing in digits' small DCGAN: its GroupNorm(K, K*C) has its own test below."""
    train = {"steps": 20, "batch_size": 8, "eval_every": 20, "log_every": 10,
             "layer_stats_every": 7}  # fmt: skip
    if method_registry.get(name).RECIPE.get("critic_schedule") == "wgan":
        train["critic_schedule"] = "fixed"
    try:
        cfgs = [resolve("digits", [(name, {})], train, {"hidden": 4}, seed=s) for s in SEEDS]
    except NoOpMethod:
        pytest.skip(f"{name} changes nothing in digits' DCGAN")
    _check_equal(cfgs, 1e-8, metrics=())


def test_conv_layer_norm_is_group_norm_per_run(float64):
    """GroupNorm(1, C) of each run (DCGAN's layer norm) as GroupNorm(K, K*C) on K-major
    channels, each run with its own affine; batch norm 2-d per (run, channel)."""
    for like in (lambda: nn.GroupNorm(1, 3), lambda: nn.BatchNorm2d(3)):
        layers = [like() for _ in range(4)]
        for m in layers:
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)
        batched = stack_leaf(layers)
        x = torch.randn(5, 4 * 3, 6, 6)
        out = batched(x).unflatten(1, (4, 3))
        for i, m in enumerate(layers):
            torch.testing.assert_close(out[:, i], m(x.unflatten(1, (4, 3))[:, i]))


def test_a_diverging_member_leaves_the_others_bitwise_unchanged():
    cfgs = _configs("norm_clip", 30)

    def run(poison: bool):
        gs, ds = [], []
        for c in cfgs:
            torch.manual_seed(c.seed)
            g, d = build_models(c.model)
            gs.append(g)
            ds.append(d)
        if poison:
            with torch.no_grad():
                ds[2].out.bias.fill_(float("nan"))  # its loss is NaN from the first step
        members = tuple(Member(c.seed, g, d, c.train, (c.methods[0].config,))
                        for c, g, d in zip(cfgs, gs, ds, strict=True))  # fmt: skip
        spec = cfgs[0].methods[0]
        t = Trainer(Population(members, 2), create_dataset("ring8"), [spec.cls(spec.config)],
                    cfgs[0].train)  # fmt: skip
        return t, t.fit_all()

    (t0, clean), (t1, poisoned) = run(False), run(True)
    assert [r.status for r in poisoned] == ["finished", "finished", "diverged", "finished"]
    assert poisoned[2].diverged_step == 0 and poisoned[2].steps == 10
    for i in (0, 1, 3):
        assert poisoned[i].metrics == clean[i].metrics
        for a, b in zip(t0.G.parameters(), t1.G.parameters(), strict=True):
            assert torch.equal(a[i], b[i])


def test_a_member_whose_callback_raises_stops_alone():
    """What a run's on_log raises (a sweep's pruning) ends that run at that step, kept on its
    result with status `stopped`; the other members are untouched."""
    cfgs = _configs("none", 20)

    def stop(step, logged):
        if step == 10:
            raise RuntimeError("pruned")

    clean = execute_population(cfgs)
    stopped = execute_population(cfgs, [None, stop, None, None])
    assert [r.status for r in stopped] == ["finished", "stopped", "finished", "finished"]
    assert stopped[1].steps == 10 and str(stopped[1].error) == "pruned"
    for i in (0, 2, 3):
        assert stopped[i].metrics == clean[i].metrics


def test_stacked_spectral_norm_has_one_sigma_per_run(float64):
    spec = ModelSpec(hidden=8, spectral_norm=("discriminator",))
    ds = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        ds.append(build_models(spec)[1])
    pop = stack(ds)
    assert isinstance(pop.body.fc0.parametrizations.weight[0], BatchedSpectralNorm)
    x = torch.randn(len(SEEDS), 5, 2)
    out = pop(x)
    for i, d in enumerate(ds):
        torch.testing.assert_close(out[i], d(x[i]), rtol=0, atol=1e-12)
    pop.eval()
    for i, d in enumerate(ds):  # after the forward, each member's u, v moved as its own did
        d.eval()
        sigma = torch.linalg.matrix_norm(pop.body.fc1.weight[i].detach(), ord=2)
        assert float(sigma) == pytest.approx(
            float(torch.linalg.matrix_norm(d.body.fc1.weight.detach(), ord=2)), rel=1e-9
        )


def test_unknown_layers_amp_and_mixed_options_are_refused_for_populations_in_one_line():
    with pytest.raises(ConfigError, match="cannot stack Conv3d layers"):
        stack([nn.Sequential(nn.Conv3d(1, 1, 1)) for _ in range(2)])
    cfgs = [tiny_config(seed=s, amp=True) for s in (0, 1)]
    with pytest.raises(ConfigError, match="amp=true cannot train populations"):
        execute_population(cfgs)
    mixed = [tiny_config(seed=0), tiny_config(seed=1, steps=3)]
    with pytest.raises(ConfigError, match="must share"):
        execute_population(mixed)


def test_a_method_that_reads_its_config_whole_keeps_its_values_shared(monkeypatch):
    """A method not declared PER_RUN (a plugin written for single runs reads `self.config`)
    may not vary its values inside a population: it would silently use member 0's."""
    cls = method_registry.get("value_clip")
    cfgs = [tiny_config([("value_clip", {"clip_value": v})], seed=i) for i, v in enumerate((1, 2))]
    monkeypatch.setattr(cls, "PER_RUN", False)
    with pytest.raises(ConfigError, match="must share"):
        execute_population(cfgs)
