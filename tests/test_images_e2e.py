"""End-to-end micro runs on image data: CPU, offline, finite metrics, recorded in MLflow."""

import math

from bench.record import run_tracked
from bench.run import resolve

TRAIN = {"steps": 6, "batch_size": 16, "eval_every": 3, "log_every": 3, "eval_samples": 500}


def test_micro_run_on_digits_with_spectral_norm_and_layer_norm(mlflow_tracker):
    cfg = resolve("digits", [("spectral_norm", {}), ("layer_norm", {})], TRAIN,
                  {"hidden": 8, "z_dim": 8, "d_capacity": 0.5}, 0, "cpu")  # fmt: skip
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
