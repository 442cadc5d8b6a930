"""Bad input across every command: one line on stderr naming the value, exit code 2, nothing on
stdout, and nothing created (no store, no report, no artifact) in the working folder."""

import gzip

import pytest

from bench.__main__ import main
from tests.servers import free_port


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Files the bad inputs point at, outside the working folder the commands run in."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "blocker").write_text("")
    # Fashion-MNIST-like folders: one with a truncated gzip, one with a wrong magic number.
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")  # fmt: skip
    header = {"images": b"\x00\x00\x08\x03" + (4).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2,
              "labels": b"\x00\x00\x08\x01" + (4).to_bytes(4, "big")}  # fmt: skip
    for kind in ("truncated", "badmagic", "short"):
        (d / kind).mkdir()
        for n in names:
            body = header["images" if "images" in n else "labels"]
            body += bytes(4 * 28 * 28 if "images" in n else 4)
            if kind == "badmagic":
                body = b"\x12\x34" + body[2:]
            if kind == "short":
                body = body[:-10]
            raw = gzip.compress(body)
            (d / kind / f"{n}.gz").write_bytes(raw[: len(raw) // 2] if kind == "truncated" else raw)
    folder = d / "images"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(12):
            (folder / c / f"{i}.png").write_bytes(_png(i))
    (folder / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    suites = {
        "bare_method": 'methods = [["none"]]',
        "text_seeds": 'seeds = ["a"]',
        "sweep_key": "[sweep]\ntrialz = 3",
        "top_key": "colour = 1",
        "not_toml": "methods = [",
        "bad_data": 'datasets = ["ring9"]',
        "overlap": 'seeds = [1]\nmethods = ["none", "norm_clip"]\n[sweep]\ntuning_seeds = [1]',
        "bad_name": 'name = "../up"',
        "train_key": "[train]\nstepz = 3",
        "bad_steps": "[train]\nsteps = -5",
        # axes and the plan: refused before any store, sweep or run exists
        "amp_population": "seeds = [0, 1, 2, 3, 4]\n[train]\namp = true\nsteps = 5",
        "axis_field": "[axes]\ncolour = [1, 2]",
        "axis_internal": '[axes]\nkind = ["mlp"]',
        "axis_empty": "[axes]\nlr_mult = []",
        "axis_range": "[axes]\nbeta1 = [0.5, 1.5]",
        "axis_twice": "[axes]\nlr_mult = [1, 1.0]",
        "cell_twice": "cells = [{lr_mult = 1}, {depth_d = 4}, {lr_mult = 1.0}]",
        "recipe_axis": 'methods = ["none", "weight_clip"]\n[axes]\nloss = ["ns", "hinge"]',
        "lr_mults": "lr_mults = [1, 10]",
        "axis_dataset": '[per_dataset.ring8.axes]\nlr_mult = ["x"]',
    }
    for name, text in suites.items():
        (d / f"{name}.toml").write_text(text + "\n")
    return d


def _png(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


RING = ["run", "--dataset", "ring8", "--no-progress"]
SWEEP = ["sweep", "--dataset", "ring8", "--method", "norm_clip"]
FASHION = ["run", "--dataset", "fashion-mnist", "--no-progress", "--data-root"]

CASES = [
    # run: names and values
    (["run", "--dataset", "ring9"], "ring9"),
    ([*RING, "--method", "clipper"], "clipper"),
    ([*RING, "--model", "resnet"], "resnet"),
    (["run", "--dataset", "digits", "--no-progress", "--model", "pacgan"], "pacgan"),
    ([*RING, "--method", "value_clip", "--set", "clip_value=-0.01"], "-0.01"),
    ([*RING, "--method", "value_clip", "--set", "clip_value=x"], "'x'"),
    ([*RING, "--method", "value_clip", "--set", "clip_value=nan"], "nan"),
    ([*RING, "--method", "value_clip", "--set", "clip_value=inf"], "inf"),
    ([*RING, "--method", "value_clip", "--set", "clip_value=1e39"], "1e+39"),
    ([*RING, "--method", "weight_clip", "--set", "clip_value=1e308"], "1e+308"),
    ([*RING, "--method", "norm_clip", "--set", "bogus=1"], "bogus"),
    ([*RING, "--set", "noequals"], "noequals"),
    ([*RING, "--method", "agc", "--method", "r1", "--set", "gamma=1"], "ambiguous"),
    ([*RING, "--method", "agc", "--method", "agc"], "agc"),
    ([*RING, "--steps", "ten"], "ten"),
    ([*RING, "--steps", "0"], "steps"),
    ([*RING, "--lr", "-1"], "-1"),
    ([*RING, "--batch-size", "1e11"], "1e11"),
    ([*RING, "--batch-size", "100000000000"], "100000000000"),
    ([*RING, "--hidden", "100000000"], "100000000"),
    ([*RING, "--loss", "bce"], "bce"),
    ([*RING, "--targets", "critic"], "critic"),
    ([*RING, "--device", "cuda:3"], "cuda:3"),
    ([*RING, "--device", "cpu:1"], "cpu:1"),
    ([*RING, "--seed", "-1"], "-1"),
    ([*RING, "--experiment", "../../tmp/x"], "../../tmp/x"),
    ([*RING, "--tracking-uri", "file:///tmp/mlruns"], "file:///tmp/mlruns"),
    ([*RING, "--tracking-uri", "http://127.0.0.1:{port}"], "unreachable"),
    ([*RING, "--tracking-uri", "postgresql://bench:secret@127.0.0.1:{port}/x"], "bench:***@"),
    ([*RING, "--tracking-uri", "sqlite:///{d}/blocker/db"], "not writable"),
    ([*RING, "--tracking-uri", "mlruns"], "not a URI"),
    # run: data files
    ([*FASHION, "{d}/truncated"], "truncated"),
    ([*FASHION, "{d}/badmagic"], "IDX"),
    ([*FASHION, "{d}/short"], "short"),
    ([*FASHION, "{d}/nowhere"], "nowhere"),
    (["run", "--dataset", "imagefolder", "--no-progress", "--data-root", "{d}/images"],
     "broken.png"),
    (["run", "--dataset", "imagefolder", "--no-progress"], "--data-root"),
    # suite
    (["suite", "--suite", "nope"], "nope"),
    (["suite", "--suite", "{d}/missing.toml"], "missing.toml"),
    (["suite", "--suite", "{d}/bare_method.toml"], "['none']"),
    (["suite", "--suite", "{d}/text_seeds.toml"], "seeds"),
    (["suite", "--suite", "{d}/sweep_key.toml"], "trialz"),
    (["suite", "--suite", "{d}/top_key.toml"], "colour"),
    (["suite", "--suite", "{d}/not_toml.toml"], "not valid TOML"),
    (["suite", "--suite", "{d}/bad_data.toml"], "ring9"),
    (["suite", "--suite", "{d}/overlap.toml"], "tuning"),
    (["suite", "--suite", "{d}/bad_name.toml"], "../up"),
    (["suite", "--suite", "{d}/train_key.toml"], "stepz"),
    (["suite", "--suite", "{d}/bad_steps.toml"], "-5"),
    (["suite", "--suite", "{d}/amp_population.toml"], "amp=true cannot train populations"),
    (["suite", "--suite", "{d}/axis_field.toml"], "colour"),
    (["suite", "--suite", "{d}/axis_internal.toml"], "'kind'"),
    (["suite", "--suite", "{d}/axis_empty.toml"], "non-empty list"),
    (["suite", "--suite", "{d}/axis_range.toml"], "beta1=1.5"),
    (["suite", "--suite", "{d}/axis_twice.toml"], "twice"),
    (["suite", "--suite", "{d}/cell_twice.toml"], "given twice"),
    (["suite", "--suite", "{d}/recipe_axis.toml"], "on_recipe_conflict"),
    (["suite", "--suite", "{d}/lr_mults.toml"], "[axes] lr_mult"),
    (["suite", "--suite", "{d}/axis_dataset.toml"], "lr_mult"),
    (["suite", "--suite", "micro", "--report", "{d}/blocker/r.md"], "not writable"),
    (["suite", "--suite", "micro", "--experiment", "a/b"], "a/b"),
    (["suite", "--suite", "micro", "--device", "tpu"], "tpu"),
    (["suite", "--suite", "micro", "--jobs", "0"], "jobs=0"),
    (["suite", "--suite", "micro", "--population", "0"], "population='0'"),
    (["suite", "--suite", "micro", "--population", "many"], "population='many'"),
    (["suite", "--suite", "micro", "--tracking-uri", "http://127.0.0.1:{port}"], "unreachable"),
    # sweep
    (["sweep", "--dataset", "ring8", "--method", "none"], "nothing to search"),
    (["sweep", "--dataset", "ring8"], "one --method"),
    ([*SWEEP, "--method", "agc"], "one --method"),
    ([*SWEEP, "--trials", "0"], "trials=0"),
    ([*SWEEP, "--population", "-2"], "population='-2'"),
    ([*SWEEP, "--workers", "0"], "workers=0"),
    ([*SWEEP, "--pruner", "foo"], "foo"),
    ([*SWEEP, "--tuning-seeds", "a,b"], "a,b"),
    ([*SWEEP, "--heartbeat", "0"], "heartbeat"),
    ([*SWEEP, "--storage", "optuna.db"], "optuna.db"),
    ([*SWEEP, "--storage", "postgresql://bench:secret@127.0.0.1:{port}/x"], "bench:***@"),
    ([*SWEEP, "--storage", "sqlite:///{d}/blocker/o.db"], "not writable"),
    ([*SWEEP, "--steps", "-3"], "-3"),
    # report
    (["report", "--experiment", "never-ran"], "never-ran"),
    (["report", "--experiment", "x", "--out", "r.txt"], "must end in .md"),
    (["report", "--experiment", "x", "--out", "{d}/blocker/r.md"], "not writable"),
    (["report", "--experiment", "../x"], "../x"),
    (["report", "--experiment", "x", "--tracking-uri", "file:///tmp/m"], "file:///tmp/m"),
    # fetch
    (["fetch", "ring8"], "nothing to download"),
    (["fetch", "nope"], "nope"),
    (["fetch", "mnist", "--data-root", "{d}/blocker/mnist"], "not writable"),
]  # fmt: skip


def test_the_table_holds_at_least_40_cases_over_every_command():
    assert len(CASES) >= 40
    assert {args[0] for args, _ in CASES} == {"run", "suite", "sweep", "report", "fetch"}


@pytest.mark.parametrize("args,expected", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    args, expected, inputs, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    port = free_port()
    args = [a.format(d=inputs, port=port) for a in args]
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2 and out.out == "", (code, out)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected in lines[0], lines[0]
    assert "secret" not in lines[0]  # credentials are masked
    assert list(tmp_path.iterdir()) == []  # no store, report or artifact


def test_report_of_an_experiment_without_a_baseline_run_says_so(mlflow_tracker, tmp_path):
    from bench.record import run_tracked
    from bench.report import build_report
    from tests.conftest import tiny_config

    run_tracked(tiny_config([("norm_clip", {})]), mlflow_tracker, "no-baseline")
    text = build_report(mlflow_tracker, "no-baseline", tmp_path / "r.md").read_text()
    assert "No `none` run in this experiment" in text and "| norm_clip" in text
