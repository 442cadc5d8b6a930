"""The seams between modules: the generated CLI, suite files checked at every level, the report
reading only the tracker's read interface, MLflow inputs, the imagefolder sweep."""

import argparse
import dataclasses
import json

import pytest

from bench.__main__ import build_parser, main
from bench.config import ModelSpec, TrainConfig
from bench.errors import ConfigError
from bench.report import build_report
from bench.suite import PRESETS, run_suite, suite_from_dict
from bench.tracking import RunRecord
from tests.datasets.test_files import write_folder


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_every_config_field_is_a_documented_flag(command):
    parser = _subparser(command)
    flags = {o for a in parser._actions for o in a.option_strings}
    for cls in (TrainConfig, ModelSpec):
        for f in dataclasses.fields(cls):
            if f.metadata.get("cli", True):
                assert "--" + f.name.replace("_", "-") in flags, f.name
    undocumented = [a.dest for a in parser._actions if a.dest != "help" and not a.help]
    assert not undocumented
    text = " ".join(parser.format_help().split())
    assert "(default: 2500; allowed: >= 10)" in text  # eval_samples: default and range shown


def test_generated_flags_reach_the_config(capsys):
    code = main(["run", "--dataset", "ring8", "--steps", "4", "--eval-every", "2",
                 "--eval-samples", "50", "--hidden", "8", "--no-stats", "--no-track",
                 "--no-progress", "--device", "cpu"])  # fmt: skip
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert code == 0 and cfg["train"]["steps"] == 4 and cfg["train"]["stats"] is False
    assert cfg["model"]["hidden"] == 8


@pytest.mark.parametrize(
    "raw, named",
    [
        ({"sweep": {"trialz": 3}}, "trialz"),
        ({"sweep": {"trials": 2, "train": {"stepz": 3}}}, "stepz"),
        ({"per_dataset": {"grid25": {}}}, "grid25"),
        ({"per_dataset": {"ring8": {"modle": {}}}}, "modle"),
        ({"methods": [["none"]]}, "['none']"),
        ({"seeds": ["a"]}, "seeds"),
        ({"train": {"stepz": 1}}, "stepz"),
        ({"datasets": "ring8"}, "datasets"),
        ({"sweep": {"tuning_seeds": [1.5]}}, "tuning_seeds"),
    ],
)
def test_suite_files_are_checked_at_every_level(raw, named):
    with pytest.raises(ConfigError) as e:
        suite_from_dict({"datasets": ["ring8"]} | raw, "t")
    assert named in str(e.value) and "\n" not in str(e.value)


def test_suite_values_stay_typed_and_hash_like_texts():
    typed = suite_from_dict({"methods": [["norm_clip", {"max_norm": 2}]]}, "t").plan().entries
    texts = suite_from_dict({"methods": [["norm_clip", {"max_norm": "2.0"}]]}, "t").plan().entries
    assert typed[0].config == texts[0].config and typed[0].config.methods[0].config.max_norm == 2


class FakeTracker:
    """The read interface only: records copied out of a real store. No `client`."""

    def __init__(self, source, experiment, folder):
        self.uri = "fake://"
        self.records = source.runs(experiment)
        self.history = {(r.run_id, k): source.metric_history(r.run_id, k)
                        for r in self.records for k in r.metrics}  # fmt: skip
        self.files = {r.run_id: source.download_artifact(r.run_id, "samples.npy",
                                                         folder / r.run_id)
                      for r in self.records}  # fmt: skip

    def runs(self, experiment, finished_only=False, query=""):
        return [r for r in self.records if r.status == "FINISHED" or not finished_only]

    def metric_history(self, run_id, key):
        return self.history.get((run_id, key), [])

    def download_artifact(self, run_id, path, folder):
        return self.files.get(run_id) if path == "samples.npy" else None


def test_report_reads_only_the_tracker_read_interface(mlflow_tracker, tmp_path):
    run_suite(PRESETS["micro"], mlflow_tracker, "t-seams", "cpu", progress=False)
    fake = FakeTracker(mlflow_tracker, "t-seams", tmp_path)
    assert all(isinstance(r, RunRecord) for r in fake.records)
    text = build_report(fake, "t-seams", tmp_path / "r.md").read_text()
    assert "| none " in text and "| norm_clip " in text
    assert "`reverse_kl` (lower is better)" in text  # definitions come from the runs
    assert (tmp_path / "r" / "samples_ring8.png").is_file()


def test_runs_carry_their_dataset_as_an_mlflow_input(mlflow_tracker):
    run_suite(PRESETS["micro"], mlflow_tracker, "t-inputs", "cpu", progress=False)
    run = mlflow_tracker.runs("t-inputs")[0]
    inputs = mlflow_tracker.client.get_run(run.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["ring8"]
    exp = mlflow_tracker.client.get_experiment_by_name("t-inputs")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert mlflow_tracker.runs_table_url("t-inputs").endswith(f"/{exp.experiment_id}/runs")


def test_imagefolder_sweeps_with_its_data_root(tmp_path, capsys):
    root = write_folder(tmp_path / "imgs", n=8)
    code = main(["sweep", "--dataset", "imagefolder", "--data-root", str(root), "--method",
                 "norm_clip", "--trials", "1", "--steps", "2", "--eval-every", "2",
                 "--eval-samples", "20", "--batch-size", "8", "--image-size", "8",
                 "--hidden", "4", "--z-dim", "4", "--no-track", "--device", "cpu",
                 "--storage", f"sqlite:///{tmp_path}/optuna.db"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["done"] == 1 and out["study"] == "adhoc.imagefolder.norm_clip"


@pytest.mark.parametrize(
    "argv, named",
    [
        (["report", "--experiment", "../../tmp/x"], "../../tmp/x"),
        (["run", "--dataset", "ring8", "--experiment", "a/b"], "a/b"),
        (["run", "--dataset", "ring8", "--device", "cpu:1", "--no-track"], "cpu:1"),
        (["sweep", "--dataset", "ring8", "--method", "none", "--no-track"], "none"),
    ],
)
def test_names_that_would_escape_or_do_nothing_exit_2(argv, named, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
