"""SIGKILL a sweeping suite at 20 random moments (the first on a fresh store), then let it
finish: every (config, seed) finished exactly once, nothing left RUNNING, exact trial budgets,
and a report."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.record import config_hash
from bench.suite import load_suite
from bench.sweep import make_storage, open_study
from bench.tracking import MlflowTracker

ROOT = Path(__file__).parents[1]
SUITE = """
name = "chaos"
datasets = ["ring8"]
seeds = [0, 1, 2]
methods = ["none", "norm_clip"]
[train]
steps = 40
batch_size = 32
eval_every = 20
log_every = 10
eval_samples = 200
[model]
hidden = 16
[sweep]
trials = 3
tuning_seeds = [100]
"""


def test_a_suite_killed_at_20_random_moments_ends_complete_and_exact(tmp_path):
    (tmp_path / "chaos.toml").write_text(SUITE)
    cmd = [sys.executable, "-m", "bench", "suite", "--suite", "chaos.toml", "--no-progress"]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    rng = random.Random(0)
    for _ in range(20):
        proc = subprocess.Popen([*cmd, "--no-report"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        time.sleep(rng.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        err = proc.communicate()[1].decode()
        assert "Traceback" not in err, err[-3000:]
    final = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert final.returncode == 0 and "Traceback" not in final.stderr, final.stderr[-3000:]
    assert (tmp_path / "reports" / "chaos.md").is_file()

    os.chdir(tmp_path)  # the suite's relative store paths
    try:
        tracker = MlflowTracker(f"sqlite:///{tmp_path}/runs/mlflow.db")
        runs = tracker.runs("chaos")
        assert not [r for r in runs if r.status == "RUNNING"]
        suite = load_suite("chaos.toml")
        done = [r for r in runs if r.tags.get("kind") not in ("trial", "study")
                and r.status == "FINISHED"]  # fmt: skip
        keys = sorted((r.tags["config_hash"], int(r.tags["seed"])) for r in done)
        assert len(keys) == len(set(keys))  # no duplicates
        # every entry of the suite, with the parameters its sweep chose, finished once
        hashes = {(r.tags["method"], r.tags["config_hash"]) for r in done}
        plan = suite.plan()
        assert len(done) == len(plan.entries) and len(hashes) == 2
        for c in suite.sweep_configs(plan):
            study = open_study(c, make_storage(f"sqlite:///{tmp_path}/runs/optuna.db"))
            counted = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")
                       or (t.state.name == "FAIL" and "fail_reason" in t.user_attrs)]  # fmt: skip
            assert len(counted) == c.trials
        assert config_hash(plan.entries[0].config) in {h for _, h in hashes}
    finally:
        os.chdir(ROOT)
