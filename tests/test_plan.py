"""The plan: a suite resolved once, cells from axes, sweeps resolved once."""

from collections import Counter

import pytest

import bench.plan as plan_mod
import bench.sweep as sweep_mod
from bench.__main__ import main
from bench.errors import ConfigError
from bench.suite import suite_from_dict

SUITE = """name = "axes3"
seeds = [0, 1]
methods = ["none", "norm_clip"]
[train]
steps = 6
batch_size = 16
eval_every = 6
log_every = 3
eval_samples = 100
[model]
hidden = 8
[axes]
lr_mult = [1, 10]
beta1 = [0.5, 0.9]
depth_d = [3, 2]
"""


@pytest.fixture
def counted(monkeypatch):
    """Every resolve call of the plan and of sweeps, by (dataset, method, train, model)."""
    calls = Counter()

    def counting(real):
        def resolve(dataset, methods, train=None, model=None, *args, **kw):
            key = (dataset, methods[0][0], tuple(sorted((train or {}).items())),
                   tuple(sorted((model or {}).items())))  # fmt: skip
            calls[key] += 1
            return real(dataset, methods, train, model, *args, **kw)

        return resolve

    for module in (plan_mod, sweep_mod):
        monkeypatch.setattr(module, "resolve", counting(module.resolve))
    return calls


def test_a_suite_resolves_each_cell_and_method_once(counted, tmp_path, monkeypatch, capsys):
    """Three axes over training and model fields: 8 cells x 2 methods, 2 seeds sharing each
    resolution; the suite records every (cell, method, seed) once and resumes by skipping."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(SUITE)
    args = ["suite", "--suite", "s.toml", "--no-progress", "--jobs", "1", "--device", "cpu"]
    assert main(args) == 0
    assert len(counted) == 16 and set(counted.values()) == {1}
    first = capsys.readouterr().out
    assert '"total": 32' in first and '"finished": 32' in first.replace('"diverged": 0', "")
    counted.clear()
    assert main(args) == 0
    assert len(counted) == 16 and set(counted.values()) == {1}
    assert '"skipped": 32' in capsys.readouterr().out
    text = (tmp_path / "reports" / "axes3.md").read_text()
    assert "### Stability across the axes" in text and "lr_mult=10.0,beta1=0.9,depth_d=2" in text


def test_a_sweep_resolves_its_spec_once(counted, tmp_path):
    cfg = sweep_mod.SweepConfig(
        "ring8", "norm_clip", trials=3, tuning_seeds=(100, 101),
        train={"steps": 4, "batch_size": 16, "eval_every": 2, "eval_samples": 50},
        model={"hidden": 8},
    )  # fmt: skip
    summary = sweep_mod.run_sweep(cfg, f"sqlite:///{tmp_path}/o.db")
    assert summary["done"] == 3 and sum(counted.values()) == 1


def test_a_sweeping_suite_tunes_at_the_plans_reference_cell_without_resolving_again(counted):
    suite = suite_from_dict({
        "methods": ["none", "norm_clip"], "seeds": [0, 1], "axes": {"lr_mult": [1, 10]},
        "sweep": {"trials": 2, "tuning_seeds": [100]}, "train": {"steps": 4},
    }, "t")  # fmt: skip
    plan = suite.plan()
    (sweep,) = suite.sweep_configs(plan)
    assert sweep.resolved is plan.reference("ring8", "norm_clip").config
    assert sweep.resolved.train.lr_mult == 1.0 and sum(counted.values()) == 4


def test_explicit_cells_vary_one_axis_at_a_time():
    suite = suite_from_dict({"cells": [{"lr_mult": 1}, {"lr_mult": 30}, {"beta1": 0.9}]}, "t")
    cells = suite.cells("ring8")
    assert [c.label for c in cells] == ["lr_mult=1.0", "lr_mult=30.0", "beta1=0.9"]
    assert [c.reference for c in cells] == [True, False, False]
    trains = [e.config.train for e in suite.plan().entries]
    assert [(t.lr_mult, t.beta1) for t in trains] == [(1.0, 0.5), (30.0, 0.5), (1.0, 0.9)]


def test_per_dataset_axes_replace_the_suites_on_that_data_set():
    own = {"grid25": {"axes": {"depth_d": [3, 4]}}}
    suite = suite_from_dict({"datasets": ["ring8", "grid25"], "axes": {"lr_mult": [1, 3]},
                             "per_dataset": own}, "t")  # fmt: skip
    assert [c.label for c in suite.cells("ring8")] == ["lr_mult=1.0", "lr_mult=3.0"]
    assert [c.label for c in suite.cells("grid25")] == ["depth_d=3", "depth_d=4"]


@pytest.mark.parametrize("policy", ["axis", "recipe"])
def test_a_recipe_conflict_is_settled_as_the_suite_says_and_recorded(policy):
    axes = {"loss": ["ns", "hinge"]}
    suite = suite_from_dict({"methods": ["none", "weight_clip"], "axes": axes,
                             "on_recipe_conflict": policy}, "t")  # fmt: skip
    clipped = [e for e in suite.plan().entries if e.config.methods[0].name == "weight_clip"]
    losses = [e.config.train.loss for e in clipped]
    assert losses == (["ns", "hinge"] if policy == "axis" else ["wasserstein"] * 2)
    assert all(("recipe_wins" in e.tags()) == (policy == "recipe") for e in clipped)
    with pytest.raises(ConfigError, match="on_recipe_conflict"):
        suite_from_dict({"methods": ["weight_clip"], "axes": {"loss": ["ns"]}}, "t").plan()
