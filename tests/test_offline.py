"""A tracking server that dies mid-run: the run finishes, prints its one JSON line, keeps its
record on local disk, and `python -m bench upload` sends it once the server is back."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.tracking import MlflowTracker
from tests.servers import free_port, start_mlflow_server, stop

ROOT = Path(__file__).parents[1]
ENV = os.environ | {"PYTHONPATH": str(ROOT)}


def test_a_run_outlives_its_tracking_server_and_is_uploaded_later(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_mlflow_server(tmp_path, port)
    work = tmp_path / "work"
    work.mkdir()
    cmd = [sys.executable, "-m", "bench", "run", "--dataset", "ring8", "--tracking-uri", url,
           "--experiment", "gone", "--steps", "4000", "--batch-size", "32", "--hidden", "16",
           "--eval-every", "1000", "--log-every", "50", "--eval-samples", "200",
           "--no-progress"]  # fmt: skip
    run = subprocess.Popen(cmd, cwd=work, env=ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        tracker = MlflowTracker(url)
        deadline = time.time() + 60
        while time.time() < deadline and not tracker.runs("gone"):
            time.sleep(0.2)
        assert tracker.runs("gone"), "the run never reached the server"
    finally:
        stop(server)  # the server dies mid-run
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    lines = out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["status"] == "finished"  # stdout: JSON only
    assert "Traceback" not in err and "python -m bench upload" in err
    kept = list((work / "runs" / "offline").iterdir())
    assert len(kept) == 1 and (kept[0] / "artifacts" / "samples.npy").is_file()

    server = start_mlflow_server(tmp_path, port)  # back, with the same store
    try:
        up = subprocess.run([sys.executable, "-m", "bench", "upload"], cwd=work, env=ENV,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
        assert up.returncode == 0 and json.loads(up.stdout)["uploaded"] == 1, up.stderr[-2000:]
        runs = MlflowTracker(url).runs("gone")
        assert len(runs) == 1  # the partial run the server kept is replaced, not duplicated
        r = runs[0]
        assert r.status == "FINISHED" and r.tags["status"] == "finished"
        assert "eval/frechet_2d" in r.metrics and "train.steps" in r.params
        history = MlflowTracker(url).metric_history(r.run_id, "loss/discriminator")
        assert len(history) >= 4000 // 50 - 1  # logged before and after the server died
        files = {f.path for f in MlflowTracker(url).client.list_artifacts(r.run_id)}
        assert "samples.npy" in files
        assert not list((work / "runs" / "offline").iterdir())
    finally:
        stop(server)
