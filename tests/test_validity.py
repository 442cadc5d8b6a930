"""Reports that mean what they say: a convergence-gate banner and no ranking when the baseline
has not converged, reference rows beside every 2-D table, each data set's own columns, and
methods that would change nothing refused."""

import dataclasses

import pandas as pd
import pytest

from bench.__main__ import main
from bench.datasets import dataset_registry
from bench.errors import ConfigError, NoOpMethod
from bench.methods import method_registry
from bench.metrics.base import Metric
from bench.record import run_tracked
from bench.report import build_report
from bench.report.build import convergence_gate
from bench.run import acts_only_on_models, models_text, resolve
from bench.suite import PRESETS, run_suite
from tests.test_seams import FakeTracker


def _table(text: str, dataset: str) -> str:
    """The data set's method table: the first markdown table of its section."""
    lines = text.split(f"## {dataset}\n", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| method"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def test_a_baseline_short_of_the_gate_gets_a_banner_and_no_ranking(mlflow_tracker, tmp_path):
    run_suite(PRESETS["micro"], mlflow_tracker, "t-gate", "cpu", progress=False)
    fake = FakeTracker(mlflow_tracker, "t-gate", tmp_path)
    text = build_report(fake, "t-gate", tmp_path / "r.md").read_text()
    head = text.split("## ")[0]
    assert "ring8: not converged" in head and "hq_fraction" in head  # in the first lines
    table = _table(text, "ring8")
    assert "rank" not in table.splitlines()[0] and "**" not in table
    for row in ("*data*", "*uniform noise*", "*moment-matched Gaussian*", "*one mode*"):
        assert row in table  # reference rows, scored by the same code

    for r in fake.records:  # the same runs, as if the baseline had converged
        if r.tags.get("method") == "none":
            r.metrics["eval/hq_fraction"] = 0.95
    text = build_report(fake, "t-gate", tmp_path / "r2.md").read_text()
    assert "not converged" not in text
    assert "rank" in _table(text, "ring8").splitlines()[0]


def test_each_data_set_gets_only_its_own_metric_columns(mlflow_tracker, tmp_path):
    tiny = {"steps": 4, "batch_size": 16, "eval_every": 4, "eval_samples": 64}
    for dataset in ("ring8", "digits"):
        for method in ("none", "norm_clip"):
            cfg = resolve(dataset, [(method, {})], tiny, {"hidden": 8}, 0, "cpu")
            run_tracked(cfg, mlflow_tracker, "t-two")
    text = build_report(mlflow_tracker, "t-two", tmp_path / "r.md").read_text()
    ring, digits = _table(text, "ring8"), _table(text, "digits")
    assert "mode_tv" in ring and "fd_digits_cnn" not in ring
    assert "fd_digits_cnn" in digits and "mode_tv" not in digits and "n/a (n=0)" not in text
    for row in ("*data*", "*uniform noise*", "*one mode*"):  # image reference rows too
        assert row in digits
    assert "360 held-out images" in text.split("## digits")[1]  # the data's stated limits


def test_image_gate_puts_the_baseline_between_the_data_and_noise_rows():
    declared = [Metric("kid_x", "min", "", primary=True), Metric("classes", "max", "")]
    refs = {"data": {"kid_x": 0.0}, "uniform noise": {"kid_x": 50.0}}
    df = pd.DataFrame({"method": ["none"] * 3 + ["zclip"] * 3,
                       "eval/kid_x": [30.0, 40.0, 1.0, 1.0, 2.0, 3.0]})  # fmt: skip
    banner = convergence_gate(df, declared, refs)
    assert "`kid_x` is 30" in banner and "`uniform noise` row (50)" in banner
    df["eval/kid_x"] = [20.0, 2.0, 1.0, 60.0, 60.0, 60.0]  # median 2: nearer the data
    assert convergence_gate(df, declared, refs) is None
    assert convergence_gate(df.assign(**{"eval/kid_x": 30.0}), declared, {}) is None  # no rows


def test_layer_norm_on_a_critic_without_a_layer_to_normalise_is_refused(capsys):
    with pytest.raises(NoOpMethod, match="layer_norm") as e:
        resolve("stacked-digits", [("layer_norm", {})])
    assert "\n" not in str(e.value)
    assert main(["run", "--dataset", "digits", "--method", "layer_norm", "--no-track"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "changes nothing" in err[0]
    suite = dataclasses.replace(PRESETS["micro"], datasets=("ring8", "stacked-digits"),
                                methods=(("none", {}), ("layer_norm", {})))  # fmt: skip
    plan = suite.plan()
    assert list(plan.left_out) == [("stacked-digits", "reference", "layer_norm")]
    assert {(e.config.dataset, e.config.methods[0].name) for e in plan.entries} == {
        ("ring8", "none"), ("ring8", "layer_norm"), ("stacked-digits", "none")}  # fmt: skip


@pytest.mark.data_files
@pytest.mark.parametrize("dataset", dataset_registry.names())
def test_every_model_method_changes_every_default_model_or_is_refused(dataset):
    """A method that acts only through the models either changes them or is refused; a new
    method module or data set is covered with no edit here."""
    for name in method_registry.names():
        cls = method_registry.get(name)
        if name == "none" or not acts_only_on_models(cls):
            continue
        try:
            cfg = resolve(dataset, [(name, {})])
        except NoOpMethod:
            continue
        except ConfigError as e:  # data not on this machine (files, a folder to give)
            pytest.skip(str(e))
        base = resolve(dataset, [("none", {})])
        assert models_text(cfg.model) != models_text(base.model), (dataset, name)


def test_axes_give_a_section_across_the_cells(mlflow_tracker, tmp_path):
    """Two axes over a training and a model field: every (cell, method, seed) runs once, tagged
    with its coordinates; the main table is the reference cell's, every cell has a row."""
    suite = dataclasses.replace(PRESETS["micro"], axes={"lr_mult": (1.0, 10.0), "depth_d": (3, 2)})
    plan = suite.plan()
    assert {(e.config.train.lr_mult, e.config.model.depth_d) for e in plan.entries} == {
        (1.0, 3), (1.0, 2), (10.0, 3), (10.0, 2)}  # fmt: skip
    counts = run_suite(suite, mlflow_tracker, "t-stab", "cpu", progress=False)
    assert counts["finished"] + counts["diverged"] == 16
    runs = [r for r in mlflow_tracker.runs("t-stab") if r.tags.get("kind", "run") == "run"]
    assert {r.tags["cell"] for r in runs} == {e.cell.label for e in plan.entries}
    assert {r.tags["axis.depth_d"] for r in runs} == {"3", "2"}
    text = build_report(mlflow_tracker, "t-stab", tmp_path / "r.md").read_text()
    assert "### Stability across the axes" in text and "lr_mult=10.0,depth_d=2" in text
    assert (tmp_path / "r" / "axes_ring8.png").is_file()
    main_rows = [ln for ln in _table(text, "ring8").splitlines() if ln.startswith("| none")]
    assert main_rows and main_rows[0].split("|")[2].strip() == "2"  # the reference cell only
    from bench.suite import suite_from_dict

    with pytest.raises(ConfigError, match="lr_mults became an axis"):
        suite_from_dict({"lr_mults": [1, 3]}, "t")
