import json
import subprocess
import sys

import pytest

from bench.__main__ import main
from tests.servers import free_port

TINY = ["--steps", "6", "--batch-size", "16", "--hidden", "8", "--eval-every", "3",
        "--log-every", "3", "--eval-samples", "100", "--no-progress", "--device", "cpu",
        "--no-track"]  # fmt: skip


def test_run_prints_one_json_line_with_status_metrics_and_config(capsys):
    code = main(
        [
            "run",
            "--dataset",
            "ring8",
            "--method",
            "norm_clip",
            "--set",
            "max_norm=0.5",
            "--seed",
            "1",
            *TINY,
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert out["status"] == "finished" and out["steps"] == 6
    assert set(out["metrics"]) >= {"modes", "hq_fraction", "reverse_kl", "frechet_2d"}
    assert out["config"]["methods"] == {
        "norm_clip": {"targets": ["generator", "discriminator"], "max_norm": 0.5, "scope": "global"}
    }
    assert out["config"]["seed"] == 1 and out["config"]["train"]["steps"] == 6
    assert out["threads"] == 1  # a 2-D MLP run takes one thread, and says so


def test_run_accepts_several_methods_targets_and_training_options(capsys):
    code = main(
        [
            "run",
            "--dataset",
            "grid25",
            "--method",
            "agc",
            "--method",
            "r1",
            "--set",
            "agc.clipping=0.1",
            "--set",
            "r1.gamma=1",
            "--targets",
            "discriminator",
            "--loss",
            "hinge",
            "--optimizer",
            "rmsprop",
            "--n-critic",
            "2",
            "--lr",
            "1e-4",
            *TINY,
        ]
    )
    assert code == 0
    cfg = json.loads(capsys.readouterr().out)["config"]
    assert cfg["methods"]["agc"]["targets"] == ["discriminator"]
    assert cfg["methods"]["r1"]["gamma"] == 1.0 and cfg["methods"]["agc"]["clipping"] == 0.1
    assert (cfg["train"]["loss"], cfg["train"]["n_critic"], cfg["train"]["lr_g"]) == (
        "hinge",
        2,
        1e-4,
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--dataset", "ring9"], "ring9"),
        (["--dataset", "ring8", "--method", "clipper"], "clipper"),
        (["--dataset", "ring8", "--method", "value_clip", "--set", "clip_value=-0.01"], "-0.01"),
        (["--dataset", "ring8", "--method", "value_clip", "--set", "clip_value=x"], "'x'"),
        (["--dataset", "ring8", "--method", "norm_clip", "--set", "bogus=1"], "bogus"),
        (["--dataset", "ring8", "--set", "noequals"], "noequals"),
        (
            ["--dataset", "ring8", "--method", "agc", "--method", "r1", "--set", "gamma=1"],
            "ambiguous",
        ),
        (["--dataset", "ring8", "--steps", "ten"], "ten"),
        (["--dataset", "ring8", "--loss", "bce"], "bce"),
        (["--dataset", "ring8", "--targets", "critic"], "critic"),
        (["--dataset", "ring8", "--device", "cuda:3"], "cuda:3"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_value(
    args, expected, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["run", *args, "--no-progress"])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_module_entry_point_exits_with_code_2_on_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--dataset", "ring9"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "ring9" in proc.stderr


def test_list_shows_every_method_with_parameters_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("value_clip", "clip_value", "zclip", "z_thresh", "ring8", "grid25", "> 0.0"):
        assert word in out


def test_run_is_tracked_in_the_given_store(mlflow_tracker, capsys):
    args = [a for a in TINY if a != "--no-track"]
    code = main(["run", "--dataset", "ring8", "--tracking-uri", mlflow_tracker.uri,
                 "--experiment", "cli-run", *args])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["status"] == "finished"
    assert len(mlflow_tracker.runs("cli-run")) == 1


def test_unreachable_store_or_unwritable_report_exit_2_before_training(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [
        (["suite", "--suite", "micro", "--tracking-uri", f"http://127.0.0.1:{free_port()}"],
         "unreachable"),
        (["suite", "--suite", "micro", "--report", f"{blocker}/r.md"], "not writable"),
        (["suite", "--suite", "nope"], "unknown suite 'nope'"),
        (["report", "--experiment", "x", "--out", f"{blocker}/r.md"], "not writable"),
        (["report", "--experiment", "x", "--out", "r.txt"], "must end in .md"),
        (["run", "--dataset", "ring8", "--tracking-uri", f"sqlite:///{blocker}/d"], "not writable"),
    ]  # fmt: skip
    for args, expected in cases:
        code = main([*args, "--no-progress"] if args[0] != "report" else args)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing trained or written


def test_report_of_an_unknown_experiment_exits_2(mlflow_tracker, tmp_path, capsys):
    out = tmp_path / "r.md"
    code = main(["report", "--experiment", "never-ran", "--out", str(out),
                 "--tracking-uri", mlflow_tracker.uri])  # fmt: skip
    assert code == 2 and "no finished runs" in capsys.readouterr().err and not out.exists()


def test_a_single_run_chooses_its_thread_count_and_records_why(monkeypatch):
    import os

    import bench.workers as workers

    assert workers.choose_threads("mlp", "cpu")[0] == 1
    n, why = workers.choose_threads("dcgan", "cpu")
    assert n == max(1, min(4, len(os.sched_getaffinity(0)))) and "conv" in why
    monkeypatch.setattr(workers, "_IN_WORKER", True)
    assert workers.choose_threads("dcgan", "cpu") == (1, workers.choose_threads("x", "cpu")[1])
    monkeypatch.setattr(workers, "_IN_WORKER", False)
    workers.set_run_threads("mlp", "cpu")
    params = workers.thread_params()
    assert params["host.threads"] == 1 and "MLP" in params["host.threads_reason"]
