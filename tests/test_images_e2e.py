"""End-to-end micro runs on image data: CPU, offline, finite metrics, recorded in MLflow."""

import math

import pytest

from bench.record import run_tracked
from bench.run import resolve

TRAIN = {"steps": 6, "batch_size": 16, "eval_every": 3, "log_every": 3, "eval_samples": 500}


def test_micro_run_on_digits_with_spectral_norm_and_layer_norm_refused(mlflow_tracker):
    from bench.errors import NoOpMethod

    model = {"hidden": 8, "z_dim": 8, "d_capacity": 0.5}
    with pytest.raises(NoOpMethod):  # the 8x8 DCGAN has no layer for layer norm to act on
        resolve("digits", [("spectral_norm", {}), ("layer_norm", {})], TRAIN, model, 0, "cpu")
    cfg = resolve("digits", [("spectral_norm", {})], TRAIN, model, 0, "cpu")
    result = run_tracked(cfg, mlflow_tracker, "img-e2e")
    assert result.status == "finished"
    assert all(math.isfinite(v) for v in result.metrics.values())
    assert result.metrics["eval/classifier_accuracy"] >= 0.97
    assert result.samples.shape == (64, 1, 8, 8)


def test_micro_run_on_stacked_digits_counts_modes(mlflow_tracker):
    cfg = resolve("stacked-digits", [("agc", {})], TRAIN, {"hidden": 8, "z_dim": 8}, 0, "cpu")
    result = run_tracked(cfg, mlflow_tracker, "img-e2e")
    m = result.metrics
    assert result.status == "finished" and 1 <= m["eval/modes"] <= 500
    assert 0 <= m["eval/stacked_kl"] <= math.log(1000) + 1e-9
    assert math.isfinite(m["eval/fd_stacked_digits_cnn"])


def test_micro_run_on_an_image_folder_resized_to_16_px(mlflow_tracker, tmp_path):
    from tests.datasets.test_files import write_folder

    root = write_folder(tmp_path / "pets", n=12)
    cfg = resolve("imagefolder", [("norm_clip", {})], TRAIN | {"eval_samples": 100},
                  {"hidden": 8, "z_dim": 8, "image_size": 16}, 0, "cpu", str(root))  # fmt: skip
    result = run_tracked(cfg, mlflow_tracker, "img-e2e")
    assert result.status == "finished" and result.samples.shape == (64, 3, 16, 16)
    assert math.isfinite(result.metrics["eval/kid_imagefolder_cnn"])
    run = mlflow_tracker.runs("img-e2e")[0]  # the newest
    assert run.params["dataset.size"] == "16" and run.params["dataset.classes"] == "2"


def test_micro_run_on_cifar10_files(mlflow_tracker, tmp_path):
    from tests.datasets.test_files import write_cifar

    write_cifar(tmp_path, n=8)
    cfg = resolve("cifar10", [("agc", {})], TRAIN | {"eval_samples": 50},
                  {"hidden": 8, "z_dim": 8}, 0, "cpu", str(tmp_path))  # fmt: skip
    result = run_tracked(cfg, mlflow_tracker, "img-e2e")
    assert result.status == "finished" and result.samples.shape == (50, 3, 32, 32)  # n < 64
    assert math.isfinite(result.metrics["eval/fd_cifar10_cnn"])
