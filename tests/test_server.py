"""A real `mlflow server` on a free loopback port: a micro suite over HTTP, then its report."""

import pytest

from bench.report import build_report
from bench.suite import PRESETS, run_suite
from bench.tracking import MlflowTracker
from tests.servers import free_port, start_mlflow_server, stop


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    proc = start_mlflow_server(tmp_path_factory.mktemp("server"), port)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


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
