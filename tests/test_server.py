"""A real `mlflow server` on a free loopback port: a micro suite over HTTP, then its report."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.report import build_report
from bench.suite import PRESETS, run_suite
from bench.tracking import MlflowTracker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    port = _free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/server.db",
         "--artifacts-destination", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_micro_suite_over_http_and_report_from_the_server(server, tmp_path):
    tracker = MlflowTracker(server)
    counts = run_suite(PRESETS["micro"], tracker, "remote-micro", "cpu", progress=False)
    assert counts["finished"] == 4
    runs = tracker.runs("remote-micro")
    assert len(runs) == 4 and all(r.tags["status"] == "finished" for r in runs)
    files = {f.path for f in tracker.client.list_artifacts(runs[0].run_id)}
    assert "samples.npy" in files  # artifacts went through the server
    out = build_report(MlflowTracker(server), "remote-micro", tmp_path / "remote.md")
    text = out.read_text()
    assert "## ring8" in text and "| norm_clip" in text and server in text
    assert (tmp_path / "remote" / "samples_ring8.png").stat().st_size > 0
