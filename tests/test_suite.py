import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bench.plan as plan_mod
import bench.suite as suite_mod
from bench.errors import ConfigError
from bench.record import config_hash
from bench.suite import PRESETS, Suite, load_suite, run_suite
from bench.tracking import MlflowTracker

MICRO = PRESETS["micro"]


def test_suite_runs_every_entry_once_and_resumes_by_skipping(mlflow_tracker):
    counts = run_suite(MICRO, mlflow_tracker, "t-suite", "cpu", progress=False)
    assert (counts["total"], counts["skipped"], counts["finished"]) == (4, 0, 4)
    again = run_suite(MICRO, mlflow_tracker, "t-suite", "cpu", progress=False)
    assert (again["skipped"], again["finished"]) == (4, 0)
    assert len(mlflow_tracker.runs("t-suite")) == 4


def test_two_jobs_record_the_same_runs_as_one(mlflow_tracker):
    """`--jobs`: single-threaded worker processes writing to one SQLite store; the same
    (config, seed) set and the same results as the sequential suite, no duplicates."""
    run_suite(MICRO, mlflow_tracker, "t-jobs1", "cpu", progress=False)
    counts = run_suite(MICRO, mlflow_tracker, "t-jobs2", "cpu", progress=False, jobs=2)
    assert (counts["finished"], counts["total"]) == (4, 4)

    def results(experiment):
        return {(r.tags["config_hash"], r.tags["seed"]): r.metrics["eval/mode_tv"]
                for r in mlflow_tracker.runs(experiment)}  # fmt: skip

    assert results("t-jobs2") == results("t-jobs1")  # seeded runs reproduce across processes
    assert len(mlflow_tracker.runs("t-jobs2")) == 4


def test_populations_record_the_same_runs_as_single_runs(mlflow_tracker):
    """`--population 2`: each member is its own run, tagged with its population; the same
    (config, seed) set as one run at a time, and the same results up to float32 rounding."""
    run_suite(MICRO, mlflow_tracker, "t-pop1", "cpu", progress=False)
    counts = run_suite(MICRO, mlflow_tracker, "t-pop2", "cpu", progress=False, population=2)
    assert (counts["finished"], counts["total"]) == (4, 4)
    runs = mlflow_tracker.runs("t-pop2")
    assert len(runs) == 4 and all(r.tags["population"].endswith("/2") for r in runs)
    assert len({r.tags["population"] for r in runs}) == 2  # one per method, seeds as members
    assert "population" not in mlflow_tracker.runs("t-pop1")[0].tags

    def results(experiment):
        return {(r.tags["config_hash"], r.tags["seed"]): r.metrics["eval/mode_tv"]
                for r in mlflow_tracker.runs(experiment)}  # fmt: skip

    one, two = results("t-pop1"), results("t-pop2")
    assert one.keys() == two.keys()
    assert all(two[k] == pytest.approx(one[k], abs=0.02) for k in one)


def test_population_sizes_are_checked_against_free_memory_before_anything_runs(monkeypatch):
    """A population is K runs' tensors: `auto` shrinks to what fits, an explicit K that does
    not fit is a one-line error naming it, before any sweep or run (nothing is tracked)."""
    import bench.resources as resources
    from bench.sweep import SweepConfig

    entries = MICRO.plan("cpu").entries
    per_run = resources.estimate_bytes(entries[0].config)
    sweep_run = resources.estimate_bytes(SweepConfig("ring8", "norm_clip").run_config({}, 0))
    monkeypatch.setattr(resources, "available_bytes", lambda device: int(1.5 * per_run))
    assert {len(c) for c in plan_mod.pack(entries, "auto", 1)} == {1}
    with pytest.raises(ConfigError, match="population=2 of batch_size=.*smaller --population"):
        plan_mod.pack(entries, 2, 1)
    with pytest.raises(ConfigError, match="population=2"):
        run_suite(MICRO, None, "t-mem", "cpu", progress=False, population=2)
    monkeypatch.setattr(resources, "available_bytes", lambda device: int(1.5 * sweep_run))
    with pytest.raises(ConfigError, match="population=2"):
        SweepConfig("ring8", "norm_clip", trials=4, population=2).validate()


def test_interrupted_run_is_marked_killed_and_redone_without_duplicates(
    mlflow_tracker, monkeypatch
):
    real = suite_mod.run_tracked_population
    calls = []

    def interrupt_second(cfgs, tracker, experiment, **kw):
        calls.append(cfgs)
        if len(calls) == 2:
            kw["progress"] = False
            with tracker.start_run(experiment, "x", {"config_hash": config_hash(cfgs[0]),
                                                     "seed": cfgs[0].seed}, {}):  # fmt: skip
                raise KeyboardInterrupt
        return real(cfgs, tracker, experiment, **kw)

    monkeypatch.setattr(suite_mod, "run_tracked_population", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run_suite(MICRO, mlflow_tracker, "t-kill", "cpu", progress=False)
    statuses = sorted(r.status for r in mlflow_tracker.runs("t-kill"))
    assert statuses == ["FINISHED", "KILLED"]
    monkeypatch.setattr(suite_mod, "run_tracked_population", real)
    counts = run_suite(MICRO, mlflow_tracker, "t-kill", "cpu", progress=False)
    assert (counts["skipped"], counts["finished"]) == (1, 3)
    runs = mlflow_tracker.runs("t-kill")  # the killed leftover was removed before its redo
    assert len(runs) == 4 and {r.status for r in runs} == {"FINISHED"}


SLOW_MICRO = """
name = "killme"
datasets = ["ring8"]
seeds = [0, 1]
methods = [["none", {}], ["norm_clip", {max_norm = "0.5"}]]
[train]
steps = 300
batch_size = 64
eval_every = 150
eval_samples = 500
[model]
hidden = 32
[axes]
lr_mult = [1, 2]
beta1 = [0.5, 0.7]
depth_d = [3, 2]
"""
SLOW_RUNS = 2 * 2 * 8  # methods x seeds x cells: 4 populations (method x depth_d) of 8


def test_killing_a_suite_process_and_rerunning_it_finishes_exactly_once(tmp_path):
    toml = tmp_path / "killme.toml"
    toml.write_text(SLOW_MICRO)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # One worker: the two populations (one per method) train one after the other, so the kill
    # lands mid-suite (two workers finished both at once, and the kill could come too late);
    # tests/test_kill_at_random.py kills suites with workers at random moments.
    cmd = [sys.executable, "-m", "bench", "suite", "--suite", str(toml), "--tracking-uri", uri,
           "--no-progress", "--no-report", "--device", "cpu", "--jobs", "1"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tracker = None
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until at least one run has finished, then kill -9
        time.sleep(0.3)
        try:  # the child may still be creating the store's tables, or hold its write lock
            tracker = tracker or MlflowTracker(uri)
            if len(tracker.done_keys("killme")) >= 1:
                break
        except Exception:
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(tracker.done_keys("killme"))
    assert 1 <= done_before < SLOW_RUNS, "the kill must land mid-suite"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    runs = tracker.runs("killme")
    keys = [(r.tags["config_hash"], r.tags["seed"]) for r in runs]
    assert len(runs) == SLOW_RUNS and len(set(keys)) == SLOW_RUNS
    assert all(r.status == "FINISHED" for r in runs)
    assert len({r.tags["cell"] for r in runs}) == 8  # every (cell, method, seed) once


def test_suite_file_errors_name_the_bad_value(tmp_path):
    with pytest.raises(ConfigError, match="unknown suite 'fast'"):
        load_suite("fast")
    bad = tmp_path / "bad.toml"
    bad.write_text('methods = [["clipper", {}]]')
    with pytest.raises(ConfigError, match="unknown method 'clipper'"):
        load_suite(str(bad))
    bad.write_text("datasets = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_suite(str(bad))
    s = Suite("x", ("ring8",), (("value_clip", {"clip_value": "-1"}),), (0,))
    with pytest.raises(ConfigError, match="clip_value=-1.0"):
        s.plan()


@pytest.mark.data_files
def test_presets_are_valid_protocols():
    """10 reporting seeds; tuning (standard, full) at the reporting length with 8+ trials on 8+
    tuning seeds that are not reporting seeds, over every member-field cell; `quick` and
    `standard` are stability studies on ring8 whose reference cell is x1, after the Dirac-GAN
    control with R1 among its methods; `full` covers every method on both mixtures over a
    learning-rate axis. Presets with file data need the files (else: skip)."""
    from bench.methods import method_registry

    missing = []
    for name in ("quick", "standard", "full"):
        suite = PRESETS[name]
        assert len(suite.seeds) >= 10
        try:
            plan = suite.plan("cpu")
        except ConfigError as e:  # files of an image data set not on this machine
            assert "not found under" in str(e), e
            missing.append(str(e))
            continue
        assert len({e.cell.label for e in plan.entries}) >= 3  # stress cells beside x1
        if name == "quick":
            assert suite.sweep is None  # published defaults only
            continue
        assert suite.sweep["trials"] >= 8 and len(suite.sweep["tuning_seeds"]) >= 8
        assert "train" not in suite.sweep
        assert not set(suite.sweep["tuning_seeds"]) & set(suite.seeds + suite.replication_seeds)
        for c in suite.sweep_configs(plan):  # the sweep trains exactly as the report does
            assert c.resolved.train == plan.reference(c.dataset, c.method).config.train
            assert len(c.cell_configs) == len(suite.cells(c.dataset))  # lr and beta1 cells
    full = PRESETS["full"]
    assert {m for m, _ in full.methods} == set(method_registry.names())
    assert {"ring8", "grid25"} <= set(full.datasets) and len(full.axes["lr_mult"]) >= 3
    assert PRESETS["quick"].datasets == PRESETS["standard"].datasets == ("dirac", "ring8")
    assert ("r1", {"gamma": "1.0"}) in PRESETS["quick"].methods_for("dirac")
    assert PRESETS["standard"].sweep["sampler_seeds"] == (0, 1)
    assert len(PRESETS["standard"].replication_seeds) == 10
    if missing:
        pytest.skip(f"checked without their data: {missing[0]}")


def test_sweeping_suite_tunes_then_retrains_on_reporting_seeds_then_reports(
    mlflow_tracker, tmp_path
):
    from bench.report import build_report

    suite = Suite(
        "msweep", ("ring8",), (("none", {}), ("norm_clip", {})), (0, 1),
        train=MICRO.train, model=MICRO.model,
        sweep={"trials": 2, "tuning_seeds": (100,), "train": {"steps": 10}},
    )  # fmt: skip
    storage = f"sqlite:///{tmp_path}/optuna.db"
    counts = run_suite(suite, mlflow_tracker, "t-msweep", "cpu", progress=False, storage=storage)
    runs = mlflow_tracker.runs("t-msweep")
    (study,) = [r for r in runs if r.tags.get("kind") == "study"]
    chosen = study.tags["best.max_norm"]
    tuned = float(chosen) != 1.0  # a sweep that chose the default adds no row
    n = 4 + 2 * tuned
    assert (counts["total"], counts["finished"]) == (n, n)
    kinds = [r.tags.get("kind", "run") for r in runs]
    assert (kinds.count("study"), kinds.count("trial"), kinds.count("run")) == (1, 2, n)
    rows = {}
    for r in runs:
        if r.tags.get("method") == "norm_clip" and r.tags.get("kind", "run") == "run":
            rows.setdefault(r.tags["label"], set()).add((r.params["method.norm_clip.max_norm"],
                                                         r.tags["seed"]))  # fmt: skip
    assert rows.pop("norm_clip") == {("1.0", "0"), ("1.0", "1")}  # the default stays a row
    assert rows == ({"norm_clip (tuned)": {(chosen, "0"), (chosen, "1")}} if tuned else {})
    again = run_suite(suite, mlflow_tracker, "t-msweep", "cpu", progress=False, storage=storage)
    assert again["finished"] == 0 and len(mlflow_tracker.runs("t-msweep")) == 3 + n
    text = build_report(mlflow_tracker, "t-msweep", tmp_path / "m.md").read_text()
    assert "### Tuning" in text and "max_norm log[0.01, 100.0]" in text
    assert (tmp_path / "m" / "budget_ring8.png").exists()
    assert (tmp_path / "m" / "sensitivity_ring8.png").exists()


def test_tuning_and_reporting_seeds_never_overlap():
    s = Suite("x", ("ring8",), (("norm_clip", {}),), (0, 1), sweep={"tuning_seeds": (1,)})
    with pytest.raises(ConfigError, match=r"seeds \[1\] are both tuning and reporting"):
        s.plan()


def test_suite_file_gives_an_image_folder_its_root(tmp_path):
    from tests.datasets.test_files import write_folder

    root = write_folder(tmp_path / "pets")
    path = tmp_path / "pets.toml"
    path.write_text(
        'datasets = ["imagefolder"]\nmethods = ["none", "norm_clip"]\n'
        "sweep = {trials = 1, tuning_seeds = [9]}\n"
        f'[per_dataset.imagefolder]\ndata_root = "{root}"\nmodel = {{image_size = 16}}\n'
    )
    suite = load_suite(str(path))
    plan = suite.plan("cpu")
    assert {(e.config.data_root, e.config.model.image_size) for e in plan.entries} == {
        (str(root), 16)
    }
    assert [s.data_root for s in suite.sweep_configs(plan)] == [str(root)]
    with pytest.raises(ConfigError, match="imagefolder: give --data-root"):
        Suite("x", ("imagefolder",), (("none", {}),), (0,)).plan("cpu")
