"""Sweeps that keep their budget under concurrency and kills: distinct values across workers,
exact budgets across concurrent invocations, lost default trials queued again, dead workers
reported in one line and their share finished, orphaned MLflow runs reconciled."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from bench.sweep import SweepConfig, done_count, make_storage, open_study, run_sweep
from bench.system import worker_id

ROOT = Path(__file__).parents[1]
ENV = os.environ | {"PYTHONPATH": str(ROOT)}
TINY = ["--steps", "20", "--batch-size", "32", "--hidden", "16", "--eval-every", "10",
        "--log-every", "10", "--eval-samples", "200", "--device", "cpu"]  # fmt: skip


def _sweep_cmd(storage: str, suite: str, trials: int, workers: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench", "sweep", "--dataset", "ring8", "--method",
            "norm_clip", "--trials", str(trials), "--workers", str(workers), "--storage",
            storage, "--suite", suite, "--heartbeat", "1", "--no-track", *TINY, *extra]  # fmt: skip


def _study(storage: str, suite: str):
    return open_study(SweepConfig("ring8", "norm_clip", suite=suite), make_storage(storage))


def _counted(study) -> list:
    return [t for t in study.get_trials(deepcopy=False)
            if t.state.name in ("COMPLETE", "PRUNED")
            or (t.state.name == "FAIL" and "fail_reason" in t.user_attrs)]  # fmt: skip


def test_two_concurrent_invocations_with_two_workers_each_keep_the_budget(tmp_path):
    storage = f"sqlite:///{tmp_path}/o.db"
    cmd = _sweep_cmd(storage, "both", 8, 2)
    procs = [subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err and "locked" not in err, err[-2000:]
    study = _study(storage, "both")
    counted = _counted(study)
    assert len(counted) == 8 and done_count(study) == 8
    values = {round(t.params["max_norm"], 12) for t in counted}
    assert len(values) >= 7, sorted(values)
    over = [t for t in study.trials if t.user_attrs.get("over_budget")]
    assert len(over) <= 4 and all(t.state.name == "FAIL" and not t.params for t in over)


def test_parallel_workers_propose_distinct_values(tmp_path):
    storage = f"sqlite:///{tmp_path}/o.db"
    cfg = SweepConfig("ring8", "norm_clip", 8, train={"steps": 20, "batch_size": 32,
                      "eval_every": 10, "eval_samples": 200}, model={"hidden": 16},
                      suite="distinct")  # fmt: skip
    out = run_sweep(cfg, storage, workers=2)
    values = [t.params["max_norm"] for t in _counted(_study(storage, "distinct"))]
    assert out["done"] == 8 and len(set(values)) == 8


def test_a_killed_default_trial_is_queued_again(tmp_path):
    storage = f"sqlite:///{tmp_path}/o.db"
    cfg = SweepConfig("ring8", "norm_clip", 2, train={"steps": 20, "batch_size": 32,
                      "eval_every": 10, "eval_samples": 200}, model={"hidden": 16},
                      suite="requeue")  # fmt: skip
    study = open_study(cfg, make_storage(storage))
    study.enqueue_trial({"max_norm": 1.0})
    trial = study.ask()  # the defaults, then the worker is "killed": FAIL without a reason
    trial.suggest_float("max_norm", 0.01, 100, log=True)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    run_sweep(cfg, storage)
    done = _counted(_study(storage, "requeue"))
    assert len(done) == 2 and 1.0 in [t.params["max_norm"] for t in done]


def _children(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        ppid = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("PPid:")), "")
        if ppid == str(pid) and "python" in text.splitlines()[0]:
            out.append(int(status.parent.name))
    return out


def test_a_dead_worker_is_one_line_and_its_share_is_finished(tmp_path):
    storage = f"sqlite:///{tmp_path}/o.db"
    cmd = _sweep_cmd(storage, "dead", 6, 2, "--steps", "150")
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline, victim = time.time() + 120, None
    while time.time() < deadline and victim is None:
        time.sleep(0.3)
        try:
            running = [t for t in _study(storage, "dead").trials if t.state.name == "RUNNING"]
        except Exception:  # the store is still being created
            continue
        if running:
            workers = [int(t.user_attrs["worker"].rpartition(":")[2]) for t in running
                       if "worker" in t.user_attrs]  # fmt: skip
            victim = next((w for w in workers if w in _children(proc.pid)), None)
    assert victim is not None, "no worker started"
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and sum("stopped early" in ln for ln in err.splitlines()) == 1
    assert len(_counted(_study(storage, "dead"))) == 6


def test_runs_left_running_by_a_dead_process_are_marked_killed(mlflow_tracker):
    exp = mlflow_tracker.experiment_id("orphans")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = worker_id().rpartition(":")[0]
    orphan = mlflow_tracker.client.create_run(exp, tags={"worker": f"{host}:{dead.pid}"})
    alive = mlflow_tracker.client.create_run(exp, tags={"worker": worker_id()})
    elsewhere = mlflow_tracker.client.create_run(exp, tags={"worker": "other-host:1"})
    assert mlflow_tracker.reconcile("orphans") == [orphan.info.run_id]
    status = {r.run_id: r.status for r in mlflow_tracker.runs("orphans")}
    assert status[orphan.info.run_id] == "KILLED"
    assert status[alive.info.run_id] == status[elsewhere.info.run_id] == "RUNNING"
