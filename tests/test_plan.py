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


def test_a_data_sets_own_methods_and_cells_with_given_values_labelled_and_not_tuned():
    """A control's own method list (R1 at gamma 1 on the Dirac-GAN) and its own axes beside the
    suite's listed cells; a method given values is labelled with them and never tuned, while
    the suite's bare methods are tuned on both data sets."""
    own = {"dirac": {"methods": ["none", ["r1", {"gamma": "1.0"}]], "axes": {"lr_mult": [1, 10]}}}
    suite = suite_from_dict({
        "datasets": ["dirac", "ring8"], "methods": ["none", "norm_clip"],
        "cells": [{"lr_mult": 1}, {"beta1": 0.9}], "per_dataset": own,
        "sweep": {"trials": 2, "tuning_seeds": [100]}, "train": {"steps": 4},
    }, "t")  # fmt: skip
    plan = suite.plan()
    got = Counter((e.config.dataset, e.cell.label, e.label) for e in plan.entries)
    assert set(got.values()) == {1}  # one seed
    assert {(d, c, m) for d, c, m in got if d == "dirac"} == {
        ("dirac", c, m) for c in ("lr_mult=1.0", "lr_mult=10.0") for m in ("none", "r1(gamma=1.0)")
    }
    assert {c for d, c, _ in got if d == "ring8"} == {"lr_mult=1.0", "beta1=0.9"}
    assert plan.reference("dirac", "r1") is None  # r1 exists only with given values
    swept = {(s.dataset, s.method) for s in suite.sweep_configs(plan)}
    assert swept == {("ring8", "norm_clip")}
    chosen = {("dirac", "r1"): {"gamma": 3.0}, ("ring8", "norm_clip"): {"max_norm": 7.0}}
    added = {e.label for e in plan.with_tuned(chosen).entries} - {e.label for e in plan.entries}
    assert added == {"norm_clip (tuned)"}


@pytest.mark.parametrize("bad", [{"methods": "none"}, {"methods": []}, {"methods": ["nope"]}])
def test_a_data_sets_bad_method_list_is_one_line(bad):
    with pytest.raises(ConfigError) as e:
        suite_from_dict({"datasets": ["ring8"], "per_dataset": {"ring8": bad}}, "t")
    assert "\n" not in str(e.value) and ("ring8" in str(e.value) or "nope" in str(e.value))


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


def test_a_sweep_per_sampler_seed_over_the_member_field_cells():
    """Each searchable method: one study per sampler seed (the second named `#s1`), whose
    objective covers the reference and the stress cells that differ in member fields only
    (the deeper critic's cell cannot join the trial's population)."""
    suite = suite_from_dict({
        "methods": ["none", "norm_clip"], "cells": [{"lr_mult": 1}, {"lr_mult": 10},
                                                    {"beta1": 0.9}, {"depth_d": 2}],
        "sweep": {"trials": 2, "tuning_seeds": [100, 101], "sampler_seeds": [0, 1]},
        "train": {"steps": 4},
    }, "t")  # fmt: skip
    plan = suite.plan()
    first, second = suite.sweep_configs(plan)
    assert (first.study_name, second.study_name) == ("t.ring8.norm_clip", "t.ring8.norm_clip#s1")
    assert (first.sampler_seed, second.sampler_seed) == (0, 1)
    cells = [(c.train.lr_mult, c.train.beta1, c.model.depth_d) for c in first.cell_configs]
    assert cells == [(1.0, 0.5, 3), (10.0, 0.5, 3), (1.0, 0.9, 3)]
    assert first.members_per_trial == 6


@pytest.mark.parametrize("seeds", [[], [0, 0], [-1], ["a"]])
def test_bad_sampler_seeds_are_one_line(seeds):
    with pytest.raises(ConfigError, match="sampler_seeds") as e:
        suite_from_dict({"methods": ["norm_clip"], "sweep": {"sampler_seeds": seeds}}, "t")
    assert "\n" not in str(e.value)
