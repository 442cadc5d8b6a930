"""SIGTERM and Ctrl-C (SIGINT to the whole process group) stop a command and all its workers
within seconds: one line, exit code 130, no trial or run finishing after the signal, nothing
left RUNNING, no leaked semaphores; the next invocation resumes with the exact budget."""

import datetime
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.workers import worker_pool
from tests.pool_tasks import refuse, square

ROOT = Path(__file__).parents[1]
ENV = os.environ | {"PYTHONPATH": str(ROOT)}
LIMIT = 10.0  # seconds from the signal until the whole process tree is gone


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (by /proc's parent links)."""
    parents = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(ln.split()[1] for ln in status.read_text().splitlines()
                        if ln.startswith("PPid:"))  # fmt: skip
        except (OSError, StopIteration):
            continue
        parents.setdefault(int(ppid), []).append(int(status.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(proc: subprocess.Popen, how: str) -> float:
    """SIGTERM to the command (`kill PID`), or SIGINT to its group (a terminal's Ctrl-C)."""
    t = time.monotonic()
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    return t


def _gone_within_limit(proc: subprocess.Popen, tree: set[int], sent: float) -> tuple[str, str]:
    out, err = proc.communicate(timeout=LIMIT + 5)
    while any(_alive(p) for p in tree) and time.monotonic() - sent < LIMIT:
        time.sleep(0.1)
    assert time.monotonic() - sent < LIMIT, f"took {time.monotonic() - sent:.1f} s"
    assert not [p for p in tree if _alive(p)], "a worker outlived the command"
    return out, err


def _stderr_is_one_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), err[-3000:]


# ---- worker pools (`suite --jobs N`) ----------------------------------------------------------


def test_a_pool_maps_in_order_and_raises_a_task_s_error():
    with worker_pool(2) as pool:
        assert list(pool.imap(square, range(7))) == [x * x for x in range(7)]
        procs = pool.procs
    assert all(p.exitcode == 0 for p in procs)  # told to end, not killed
    # the first error to arrive ends the map (either task may finish first)
    with pytest.raises(ValueError, match="task [34] refused"), worker_pool(2) as pool:
        list(pool.imap(refuse, [3, 4]))
    assert all(p.exitcode is not None for p in pool.procs)


POOL_SCRIPT = """
import signal, sys
from bench.workers import worker_pool
from tests.pool_tasks import linger

def interrupt(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, interrupt)
try:
    with worker_pool(2) as pool:
        for _ in pool.imap(linger, [sys.argv[1]] * 5):
            pass
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_signalled_pool_stops_every_worker_within_seconds(how, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", POOL_SCRIPT, str(tmp_path)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(tmp_path.iterdir())) == 2, "the workers never started their tasks"
    tree = _descendants(proc.pid)
    sent = _signal(proc, how)
    _out, err = _gone_within_limit(proc, tree, sent)
    assert proc.returncode == 130
    _stderr_is_one_line(err)  # no traceback, no resource_tracker "leaked semaphore" warning
    assert len(list(tmp_path.iterdir())) == 2  # no task started after the signal


# ---- sweeps with workers --------------------------------------------------------------------

TRIALS = 4


def _sweep_cmd(storage: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench", "sweep", "--dataset", "ring8", "--method",
            "norm_clip", "--trials", str(TRIALS), "--workers", "2", "--storage", storage,
            "--suite", "sig", "--heartbeat", "1", "--steps", "200", "--batch-size", "32",
            "--hidden", "16", "--eval-every", "100", "--log-every", "100",
            "--eval-samples", "200", "--device", "cpu", *extra]  # fmt: skip


def _trials(db: Path) -> list[tuple[int, str, str | None]]:
    try:  # read-only: a plain connect would create the file the sweep is about to create
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
            return c.execute("SELECT number, state, datetime_complete FROM trials").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def _counted(storage: str):
    from bench.sweep import SweepConfig, make_storage, open_study

    study = open_study(SweepConfig("ring8", "norm_clip", TRIALS, suite="sig"),
                       make_storage(storage))  # fmt: skip
    return [t for t in study.get_trials(deepcopy=False)
            if t.state.name in ("COMPLETE", "PRUNED")
            or (t.state.name == "FAIL" and "fail_reason" in t.user_attrs)]  # fmt: skip


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_signalled_sweep_stops_its_workers_and_resumes_exactly(how, tmp_path):
    db = tmp_path / "o.db"
    storage = f"sqlite:///{db}"
    track = ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--experiment", "sig"]
    cmd = _sweep_cmd(storage, *(track if how == "SIGTERM" else ["--no-track"]))
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        states = [s for _, s, _ in _trials(db)]
        if "COMPLETE" in states and "RUNNING" in states:
            break
        time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended early: {proc.communicate()[1][-3000:]}")
    else:
        pytest.fail(f"no trial finished while another ran: {_trials(db)}")
    tree = _descendants(proc.pid)
    at = datetime.datetime.now()
    sent = _signal(proc, how)
    out, err = _gone_within_limit(proc, tree, sent)
    assert proc.returncode == 130 and out == ""
    _stderr_is_one_line(err)
    trials = _trials(db)
    assert "RUNNING" not in [s for _, s, _ in trials]  # stopped trials are failed at once
    # A trial told complete in the instant the signal took to reach its worker is no trial
    # trained on; the command used to let its workers run whole trials after it had ended.
    late = [
        n
        for n, s, end in trials
        if s in ("COMPLETE", "PRUNED")
        and datetime.datetime.fromisoformat(end) > at + datetime.timedelta(seconds=0.5)
    ]
    assert not late, trials
    if how == "SIGTERM":
        _assert_runs_ended(tmp_path)
    again = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0 and "failed" not in again.stderr, again.stderr[-3000:]
    assert len(_counted(storage)) == TRIALS  # exact: no stopped trial counted, none missing


def _assert_runs_ended(folder: Path) -> None:
    """The MLflow runs of the stopped trials ended KILLED, none is left RUNNING."""
    from bench.tracking import MlflowTracker

    runs = [r for r in MlflowTracker(f"sqlite:///{folder}/mlflow.db").runs("sig")
            if r.tags.get("kind") == "trial"]  # fmt: skip
    assert runs and not [r for r in runs if r.status == "RUNNING"], [r.status for r in runs]
    assert "KILLED" in {r.status for r in runs}


# ---- suites with jobs -----------------------------------------------------------------------

SUITE = """
name = "sigsuite"
datasets = ["ring8"]
seeds = [0, 1, 2, 3]
methods = ["none", "norm_clip"]
[train]
steps = 300
batch_size = 32
eval_every = 100
log_every = 100
eval_samples = 200
[model]
hidden = 16
"""


def _runs(db: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
            return [s for (s,) in c.execute("SELECT status FROM runs").fetchall()]
    except sqlite3.OperationalError:
        return []


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_signalled_suite_stops_its_jobs_and_resumes_exactly(how, tmp_path):
    (tmp_path / "s.toml").write_text(SUITE)
    cmd = [sys.executable, "-m", "bench", "suite", "--suite", "s.toml", "--jobs", "2",
           "--population", "1", "--no-report", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    db, deadline = tmp_path / "runs" / "mlflow.db", time.monotonic() + 240
    while not ("FINISHED" in _runs(db) and "RUNNING" in _runs(db)):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    tree = _descendants(proc.pid)
    _out, err = _gone_within_limit(proc, tree, _signal(proc, how))
    assert proc.returncode == 130
    _stderr_is_one_line(err)  # no "leaked semaphore" warning
    assert "RUNNING" not in _runs(db) and "KILLED" in _runs(db)
    again = subprocess.run(cmd, env=ENV, cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    from bench.tracking import MlflowTracker

    done = [r for r in MlflowTracker(f"sqlite:///{db}").runs("sigsuite", finished_only=True)]
    keys = [(r.tags["config_hash"], r.tags["seed"]) for r in done]
    assert len(keys) == len(set(keys)) == 8  # every (config, seed) once
