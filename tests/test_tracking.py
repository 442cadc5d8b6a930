import json
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.record import config_hash, run_tracked
from bench.tracking import MlflowTracker, NullTracker, check_reachable
from tests.conftest import tiny_config
from tests.servers import free_port

METHOD_KEYS = ("method/", "layer/")  # method- and architecture-specific namespaces


def _core(keys):
    """Keys every run must share: all but the method/layer namespaces and the penalty terms
    (`loss/<role>/<term>`)."""
    return {
        k for k in keys
        if not k.startswith(METHOD_KEYS) and not (k.startswith("loss/") and k.count("/") == 2)
    }  # fmt: skip


def test_run_is_recorded_with_tags_params_metrics_and_artifacts(mlflow_tracker, tmp_path):
    cfg = tiny_config([("norm_clip", {"max_norm": "0.5"})], seed=2)
    result = run_tracked(cfg, mlflow_tracker, "t-record", suite="s")
    (run,) = mlflow_tracker.runs("t-record")
    tags, params, metrics = run.tags, run.params, run.metrics
    assert run.status == "FINISHED"
    assert {k: tags[k] for k in ("dataset", "method", "family", "seed", "suite", "status")} == {
        "dataset": "ring8", "method": "norm_clip", "family": "gradient clipping", "seed": "2",
        "suite": "s", "status": "finished",
    }  # fmt: skip
    assert tags["config_hash"] == config_hash(cfg)
    assert params["method.norm_clip.max_norm"] == "0.5" and params["train.steps"] == "12"
    assert "version.torch" in params and "git_commit" in params and params["dataset.modes"] == "8"
    assert params["host.threads"] == "1" and "MLP" in params["host.threads_reason"]
    assert metrics["eval/modes"] == result.metrics["eval/modes"]
    assert {"summary/clip_rate/discriminator", "grad/generator/norm_pre"} <= set(metrics)
    history = mlflow_tracker.client.get_metric_history(run.run_id, "loss/discriminator")
    assert [m.step for m in history] == [3, 6, 9, 12]
    files = {f.path for f in mlflow_tracker.client.list_artifacts(run.run_id)}
    assert files == {"config.json", "result.json", "samples.npy", "samples.png", "grad_norms.png"}
    path = mlflow_tracker.client.download_artifacts(run.run_id, "config.json", str(tmp_path))
    assert json.loads(Path(path).read_text()) == json.loads(json.dumps(cfg.to_dict()))
    assert mlflow_tracker.done_keys("t-record") == {(config_hash(cfg), 2)}


def test_runs_of_different_methods_share_the_same_metric_keys(mlflow_tracker):
    for method in ("none", "value_clip", "zclip", "weight_clip", "r1", "spectral_norm"):
        run_tracked(tiny_config([(method, {})]), mlflow_tracker, "t-keys")
    key_sets = [_core(r.metrics) for r in mlflow_tracker.runs("t-keys")]
    assert len(key_sets) == 6 and all(ks == key_sets[0] for ks in key_sets)
    assert {"eval/reverse_kl", "clip/discriminator/rate", "d/real"} <= key_sets[0]


def test_diverged_run_is_kept_with_its_status(mlflow_tracker):
    cfg = tiny_config(lr_g=1e30, lr_d=1e30, steps=30)
    result = run_tracked(cfg, mlflow_tracker, "t-div")
    (run,) = mlflow_tracker.runs("t-div")
    assert result.status == "diverged" and run.tags["status"] == "diverged"
    assert int(run.tags["diverged_step"]) == result.diverged_step
    assert run.metrics["summary/diverged"] == 1.0
    assert mlflow_tracker.done_keys("t-div") == {(config_hash(cfg), 0)}


def test_null_tracker_records_nothing():
    tracker = NullTracker()
    result = run_tracked(tiny_config(), tracker, "x")
    assert result.status == "finished" and tracker.done_keys("x") == set()


def test_unreachable_or_unusable_tracking_uris_fail_fast(tmp_path):
    with pytest.raises(ConfigError, match="unreachable"):
        check_reachable(f"http://127.0.0.1:{free_port()}")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="not writable"):
        MlflowTracker(f"sqlite:///{blocker}/sub/mlflow.db")
    with pytest.raises(ConfigError, match="not a URI"):
        check_reachable("runs/mlflow.db")
