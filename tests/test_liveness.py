"""A run is replaced only when the process that owned it is gone (the rule `reconcile` uses):
two invocations on overlapping configs never delete each other's live runs."""

import pickle
import subprocess
import sys
import time

import pytest

from bench.errors import ConfigError
from bench.system import owner_alive, worker_id
from bench.tracking import RunInProgress

KEY = {"config_hash": "abc123", "seed": "7"}


@pytest.fixture
def sleeper():
    """A live process of this machine (another invocation, say)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.2)
    yield proc
    proc.kill()
    proc.wait()


def _host() -> str:
    return worker_id().rpartition(":")[0]


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _run(tracker, experiment, worker, status=None, start_time=None):
    exp = tracker.experiment_id(experiment)
    run = tracker.client.create_run(exp, tags=KEY | {"worker": worker}, start_time=start_time)
    if status:
        tracker.client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def _start(tracker, experiment):
    with tracker.start_run(experiment, "again", dict(KEY), {}) as run:
        return run.run_id


def _ids(tracker, experiment):
    return {r.run_id for r in tracker.runs(experiment)}


def test_a_running_run_whose_owner_is_alive_is_left_to_it(mlflow_tracker, sleeper):
    live = _run(mlflow_tracker, "live", f"{_host()}:{sleeper.pid}")
    with pytest.raises(RunInProgress, match=f"recorded by process {_host()}:{sleeper.pid}") as e:
        _start(mlflow_tracker, "live")
    assert _ids(mlflow_tracker, "live") == {live}  # nothing deleted, nothing created
    assert mlflow_tracker.busy_keys("live") == {("abc123", 7)}
    again = pickle.loads(pickle.dumps(e.value))  # raised in a pool worker, again in its parent
    assert isinstance(again, ConfigError) and str(again) == str(e.value)


def test_another_machine_s_running_run_is_left_to_its_owner(mlflow_tracker):
    elsewhere = _run(mlflow_tracker, "elsewhere", "other-host:1")
    with pytest.raises(RunInProgress):
        _start(mlflow_tracker, "elsewhere")
    assert _ids(mlflow_tracker, "elsewhere") == {elsewhere}


def test_leftovers_of_dead_owners_are_replaced(mlflow_tracker, sleeper):
    host = _host()
    dead = _run(mlflow_tracker, "dead", f"{host}:{_dead_pid()}")
    killed = _run(mlflow_tracker, "dead", f"{host}:{sleeper.pid}", status="KILLED")
    # the owner's pid now belongs to a process that began after the run: not its owner
    reused = _run(mlflow_tracker, "dead", f"{host}:{sleeper.pid}",
                  start_time=int((time.time() - 3600) * 1000))  # fmt: skip
    assert not owner_alive(f"{host}:{sleeper.pid}", int((time.time() - 3600) * 1000))
    assert mlflow_tracker.busy_keys("dead") == set()
    new = _start(mlflow_tracker, "dead")
    assert _ids(mlflow_tracker, "dead") == {new}
    assert not {dead, killed, reused} & _ids(mlflow_tracker, "dead")


def test_a_finished_run_is_kept_beside_a_redo(mlflow_tracker):
    exp = mlflow_tracker.experiment_id("kept")
    done = mlflow_tracker.client.create_run(exp, tags=KEY | {"status": "finished"})
    mlflow_tracker.client.set_terminated(done.info.run_id, "FINISHED")
    new = _start(mlflow_tracker, "kept")
    assert _ids(mlflow_tracker, "kept") == {done.info.run_id, new}


def test_two_processes_starting_one_key_at_once_create_one_run(mlflow_tracker, tmp_path):
    """The claim (find the key free, create its run) is atomic on a local store: of two
    processes that start the same (config, seed) together, one records it, the other is told
    that it is in progress."""
    script = f"""
import os, sys, time
from pathlib import Path
from bench.tracking import MlflowTracker, RunInProgress
tracker = MlflowTracker({mlflow_tracker.uri!r})
tracker.experiment_id("race")
Path(str(os.getpid())).touch()
while len(os.listdir(".")) < 2:  # both ready: start together
    time.sleep(0.01)
try:
    with tracker.start_run("race", "r", {KEY!r}, {{}}):
        time.sleep(3)
    print("recorded")
except RunInProgress:
    print("in progress")
"""
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=tmp_path, env=_env()) for _ in range(2)]  # fmt: skip
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs == ["in progress", "recorded"], outs
    assert len(mlflow_tracker.runs("race")) == 1


def _env():
    import os
    from pathlib import Path

    return os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}


OVERLAP = """name = "overlap"
seeds = [0, 1, 2, 3]
methods = ["none", "norm_clip"]
[train]
steps = 150
batch_size = 32
eval_every = 150
eval_samples = 200
[model]
hidden = 16
"""


def test_two_overlapping_suites_both_finish_and_record_every_run_once(tmp_path):
    """Started at once on one experiment: neither deletes the other's live runs, both exit 0,
    and every (config, seed) is FINISHED exactly once (a run the other is training is left to
    it; a rerun afterwards finds everything done)."""
    import os
    from pathlib import Path

    from bench.tracking import MlflowTracker

    (tmp_path / "overlap.toml").write_text(OVERLAP)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowTracker(uri)  # the store exists before both start
    cmd = [sys.executable, "-m", "bench", "suite", "--suite", "overlap.toml", "--tracking-uri",
           uri, "--no-progress", "--no-report", "--jobs", "1", "--population", "1",
           "--device", "cpu"]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1])}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    runs = MlflowTracker(uri).runs("overlap")
    keys = [(r.tags["config_hash"], r.tags["seed"]) for r in runs]
    assert len(keys) == len(set(keys)) == 8, sorted(keys)
    assert all(r.status == "FINISHED" for r in runs)
