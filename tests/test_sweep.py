import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

import bench.objective as objective_mod
from bench.errors import ConfigError
from bench.metrics.base import Metric
from bench.objective import Diverged, Judge
from bench.run import execute_population
from bench.sweep import (
    Objective,
    SweepConfig,
    done_count,
    make_storage,
    open_study,
    run_sweep,
    sweep_population,
)
from bench.tracking import NullTracker

TINY = {"steps": 20, "batch_size": 32, "eval_every": 5, "log_every": 5, "eval_samples": 200}
MODEL = {"hidden": 16}
PG = "postgresql://root@127.0.0.1:5432/test"


def tiny_sweep(trials=4, suite=None, **kw):
    suite = suite or f"t{uuid.uuid4().hex[:8]}"
    return SweepConfig("ring8", "norm_clip", trials, train=TINY | kw.pop("train", {}), model=MODEL,
                       suite=suite, **kw)  # fmt: skip


def _states(study):
    return sorted(t.state.name for t in study.get_trials(deepcopy=False))


def test_four_trial_sweep_leaves_four_trials_and_four_nested_runs(mlflow_tracker, tmp_path):
    cfg = tiny_sweep(4)
    out = run_sweep(cfg, f"sqlite:///{tmp_path}/o.db", tracker=mlflow_tracker, experiment="sw4")
    assert out["trials"] == 4 and out["done"] == 4
    runs = mlflow_tracker.runs("sw4")
    parents = [r for r in runs if r.tags.get("kind") == "study"]
    children = [r for r in runs if r.tags.get("kind") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    assert {r.tags["mlflow.parentRunId"] for r in children} == {parents[0].run_id}
    assert all("trial.max_norm" in r.params and "state" in r.tags for r in children)
    assert {
        t.params["max_norm"]
        for t in open_study(cfg, make_storage(f"sqlite:///{tmp_path}/o.db")).trials
    } >= {1.0}  # noqa: E501  (the defaults come first)
    parent = parents[0]
    assert parent.tags["best.max_norm"] and parent.tags["space.max_norm"].startswith("log")
    files = {f.path for f in mlflow_tracker.client.list_artifacts(parent.run_id)}
    assert {"best_params.json", "optimization_history.png", "objective_vs_max_norm.png"} <= files


def test_diverged_members_score_the_worst_value_and_the_study_goes_on(tmp_path):
    """Every member diverges: each trial completes at the primary metric's declared worst value
    (a result the sampler learns from), with the divergences recorded on the trial."""
    cfg = tiny_sweep(2, train={"lr_g": 1e30, "lr_d": 1e30, "steps": 30})
    out = run_sweep(cfg, f"sqlite:///{tmp_path}/o.db")
    study = open_study(cfg, make_storage(f"sqlite:///{tmp_path}/o.db"))
    worst = cfg.objectives()[0].worst
    assert out["complete"] == 2 and done_count(study) == 2 and worst == 1.0
    assert all(t.value == worst and "1 of 1 members" in t.user_attrs["diverged"]
               for t in study.trials)  # fmt: skip


def test_a_trial_without_a_worst_value_fails_with_its_reason():
    metric = Metric("m", "min", "", primary=True)  # no worst declared
    trial = optuna.create_study().ask()
    judge = Judge([metric], [(trial, {})], [None], [0, 0], multi=False)
    ok = SimpleNamespace(status="finished", error=None, metrics={"eval/m": 0.5})
    bad = SimpleNamespace(status="diverged", error=None, diverged_step=7)
    outcome = judge.outcome(0, [ok, bad])
    assert isinstance(outcome, Diverged) and "1 of 2 members (at 7)" in str(outcome)
    assert judge.outcome(0, [ok, ok]) == [0.5]


def test_a_trial_is_one_population_of_its_cells_and_seeds(monkeypatch, tmp_path):
    """Cells x tuning seeds, one population per trial; the objective is the members' mean, and
    the pruner sees that mean once per evaluation."""
    base = tiny_sweep(1, tuning_seeds=(1000, 1001))
    stress = dataclasses.replace(base.resolved, train=dataclasses.replace(
        base.resolved.train, lr_mult=10.0))  # fmt: skip
    cfg = dataclasses.replace(base, cells=(stress,), base=base.resolved)
    assert cfg.members_per_trial == 4
    seen = []

    def recording(cfgs, on_logs=None, on_flush=None, **kw):
        seen.append([(c.seed, c.train.lr_mult) for c in cfgs])
        return execute_population(cfgs, on_logs, on_flush=on_flush, **kw)

    monkeypatch.setattr(objective_mod, "execute_population", recording)
    run_sweep(cfg, f"sqlite:///{tmp_path}/o.db")
    assert seen == [[(1000, 1.0), (1001, 1.0), (1000, 10.0), (1001, 10.0)]]
    (trial,) = open_study(cfg, make_storage(f"sqlite:///{tmp_path}/o.db")).trials
    values = json.loads(trial.user_attrs["member_values"])
    assert len(values) == 4 and trial.value == pytest.approx(sum(values) / 4)
    assert sorted(trial.intermediate_values) == [5, 10, 15, 20]


def test_objective_cells_must_differ_in_member_fields_only():
    base = tiny_sweep(1)
    deeper = dataclasses.replace(base.resolved, model=dataclasses.replace(
        base.resolved.model, depth_d=2))  # fmt: skip
    with pytest.raises(ConfigError, match="member fields"):
        dataclasses.replace(base, cells=(deeper,), base=base.resolved).validate()


def test_a_population_of_trials_counts_each_trial_and_records_each_run(mlflow_tracker, tmp_path):
    """Four trials asked two at a time (one population of both trials' members): the same
    budget, four nested runs with their own states, each trial's own parameter and one
    intermediate value per evaluation (its members' mean)."""
    cfg = tiny_sweep(4, tuning_seeds=(1000, 1001), population=2)
    assert cfg.population_size(workers=1) == 2
    out = run_sweep(cfg, f"sqlite:///{tmp_path}/o.db", tracker=mlflow_tracker, experiment="swp")
    assert out["trials"] == 4 and out["done"] == 4
    study = open_study(cfg, make_storage(f"sqlite:///{tmp_path}/o.db"))
    assert len({t.params["max_norm"] for t in study.trials}) == 4
    for t in study.trials:
        if t.state.name == "COMPLETE":
            assert sorted(t.intermediate_values) == [5, 10, 15, 20]
    children = [r for r in mlflow_tracker.runs("swp") if r.tags.get("kind") == "trial"]
    assert len(children) == 4 and all("state" in r.tags for r in children)


def test_auto_population_is_single_on_cpu_and_leaves_the_sampler_four_rounds_on_gpu():
    assert tiny_sweep(20, population="auto").population_size(workers=1) == 1  # CPU: pruning
    assert sweep_population("auto", "mlp", "cuda", trials=20, workers=1) == 5
    assert sweep_population("auto", "mlp", "cuda", trials=8, workers=2) == 2
    assert tiny_sweep(8, population=16).population_size(workers=2) == 4  # a share per worker


def test_hopeless_trial_is_pruned_at_its_first_report():
    cfg = tiny_sweep(3)
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    dist = {"max_norm": optuna.distributions.FloatDistribution(1e-2, 1e2, log=True)}
    for _ in range(2):  # two finished trials that were excellent at every evaluation
        study.add_trial(optuna.trial.create_trial(
            params={"max_norm": 1.0}, distributions=dist, value=0.01,
            intermediate_values={5: 0.01, 10: 0.01, 15: 0.01, 20: 0.01},
        ))  # fmt: skip
    tracker = NullTracker()
    objective = Objective(cfg, tracker, "x", tracker.parent_run("x", "s", {}))
    study.optimize(objective, n_trials=1)
    trial = study.trials[-1]
    assert trial.state.name == "PRUNED"
    assert list(trial.intermediate_values) == [5]  # stopped at the first evaluation of 4
    assert "worse than the median" in trial.user_attrs["prune_reason"]


def _run_workers(storage, cfg, workers):
    return run_sweep(cfg, storage, workers=workers)


def test_three_workers_run_exactly_the_requested_trials_on_sqlite(tmp_path):
    cfg = tiny_sweep(7)
    out = _run_workers(f"sqlite:///{tmp_path}/o.db", cfg, 3)
    study = open_study(cfg, make_storage(f"sqlite:///{tmp_path}/o.db"))
    trials = [t for t in study.trials if not t.user_attrs.get("over_budget")]
    assert out["trials"] == 7 and len(trials) == 7 and done_count(study) == 7
    assert len(study.trials) <= 7 + 3  # at most one asked past the budget per worker


def _postgres_ok() -> bool:
    try:
        make_storage(PG)
        return True
    except ConfigError:
        return False


def test_three_workers_share_one_study_on_postgresql():
    if not _postgres_ok() and os.environ.get("CI"):
        pytest.fail("PostgreSQL at 127.0.0.1:5432 must be reachable in CI")
    if not _postgres_ok():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    cfg = tiny_sweep(6)
    try:
        out = _run_workers(PG, cfg, 3)
        study = open_study(cfg, make_storage(PG))
        trials = [t for t in study.trials if not t.user_attrs.get("over_budget")]
        assert out["trials"] == 6 and len(trials) == 6 and done_count(study) == 6
    finally:
        optuna.delete_study(study_name=cfg.study_name, storage=PG)


def test_killed_sweep_reruns_only_the_missing_trials(tmp_path):
    storage = f"sqlite:///{tmp_path}/o.db"
    cmd = [sys.executable, "-m", "bench", "sweep", "--dataset", "ring8", "--method", "norm_clip",
           "--trials", "5", "--storage", storage, "--heartbeat", "1", "--no-track",
           "--steps", "150", "--batch-size", "32", "--hidden", "16", "--eval-every", "50",
           "--log-every", "50", "--eval-samples", "200", "--device", "cpu",
           "--suite", "kill"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cfg = SweepConfig("ring8", "norm_clip", 5, suite="kill")
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and done < 2:
        time.sleep(0.5)
        try:
            done = done_count(open_study(cfg, make_storage(storage)))
        except Exception:  # the first process is still creating the tables
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = open_study(cfg, make_storage(storage))
    before = done_count(study)
    assert 2 <= before < 5, "the kill must land mid-sweep"
    time.sleep(3.5)  # > 3 missed heartbeats: the killed trial is stale
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    study = open_study(cfg, make_storage(storage))
    assert done_count(study) == 5
    new = [t for t in study.trials if t.number >= before]
    stale = [
        t for t in study.trials if t.state.name == "FAIL" and "fail_reason" not in t.user_attrs
    ]
    assert len(stale) <= 1 and len(study.trials) == 5 + len(stale)
    assert len(new) == 5 - before + len(stale)


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--storage", "nonsense"], "not a URL"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/x"], "cannot be opened"),
        (["--method", "clipper"], "unknown method 'clipper'"),
        (["--trials", "0"], "trials=0"),
        (["--pruner", "fast"], "pruner 'fast'"),
        (["--tuning-seeds", "a,b"], "'a,b'"),
    ],
)
def test_bad_sweep_input_exits_2_with_one_line(args, expected, tmp_path, monkeypatch, capsys):
    from bench.__main__ import main

    monkeypatch.chdir(tmp_path)
    base = ["sweep", "--dataset", "ring8", "--method", "norm_clip", "--no-track"]
    if "--method" in args:
        base = base[:3] + base[5:]
    code = main(base + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "runs").exists()


def test_a_stored_study_resumes_only_under_its_own_objective(tmp_path):
    storage = f"sqlite:///{tmp_path}/o.db"
    cfg = tiny_sweep(1, tuning_seeds=(1000,))
    run_sweep(cfg, storage)
    run_sweep(cfg, storage)  # the same objective: resumes (nothing left to do)
    other = dataclasses.replace(cfg, tuning_seeds=(1000, 1001))
    with pytest.raises(ConfigError, match="another objective") as e:
        run_sweep(other, storage)
    assert "\n" not in str(e.value)


def test_amp_with_a_trial_of_several_members_is_refused_before_any_trial():
    cfg = tiny_sweep(2, tuning_seeds=(1, 2), train={"amp": True})
    with pytest.raises(ConfigError, match="amp=true cannot train a trial's 2 members"):
        cfg.validate()


def test_a_member_diverging_without_a_worst_value_stops_its_trial_at_once():
    metric = Metric("m", "min", "", primary=True)  # no worst declared
    trial = optuna.create_study().ask()
    judge = Judge([metric], [(trial, {})], [None], [0, 0], multi=False)
    stop = judge(10, {0: None, 1: {"eval/m": 0.3}})
    assert list(stop) == [1] and isinstance(stop[1], Diverged)
    stopped = SimpleNamespace(status="stopped", error=stop[1])
    diverged = SimpleNamespace(status="diverged", error=None, diverged_step=7)
    assert judge.outcome(0, [diverged, stopped]) is stop[1]
    assert "fail_reason" in trial.user_attrs
