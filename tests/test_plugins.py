"""Methods from other packages: an installed distribution (tests/plugin holds one, with its
.dist-info, put on the path of a subprocess) registers methods through the entry-point group
`gan_bench.methods`; they appear in `list`, run in suites and sweeps, and `check` runs the
contract battery on them."""

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).parent / "plugin"


def bench(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = os.environ | {"PYTHONPATH": str(PLUGIN)} | env
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_plugin_method_is_listed_and_checked(tmp_path):
    listed = bench("list", cwd=tmp_path)
    assert listed.returncode == 0 and "shrink" in listed.stdout and "log[0.1, 1]" in listed.stdout
    ok = bench("check", "shrink", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  trains" in ok.stdout and "8 of 8 checks passed" in ok.stdout
    bad = bench("check", "idle", cwd=tmp_path)  # registered, but does nothing
    assert bad.returncode == 1 and "FAIL  acts" in bad.stdout


def test_plugin_method_runs_in_a_sweeping_suite(tmp_path):
    suite = tmp_path / "plug.toml"
    suite.write_text(
        'name = "plug"\ndatasets = ["ring8"]\nseeds = [0]\nmethods = ["none", "shrink"]\n'
        "[train]\nsteps = 6\nbatch_size = 32\neval_every = 3\nlog_every = 3\n"
        "eval_samples = 100\n[model]\nhidden = 8\n"
        '[sweep]\ntrials = 2\ntuning_seeds = [100]\npruner = "none"\n'
    )
    out = bench("suite", "--suite", str(suite), "--no-progress", "--device", "cpu",
                "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                "--storage", f"sqlite:///{tmp_path}/optuna.db", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    report = tmp_path / summary["report"]
    assert summary["finished"] == 2 and "shrink" in report.read_text()
    assert summary["runs_table"].startswith("http://127.0.0.1:5000/#/experiments/")


def test_a_broken_plugin_is_one_line_not_a_crash(tmp_path):
    dist = tmp_path / "bad-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bad\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[gan_bench.methods]\nbad = no_such_module:X\n")
    out = bench("list", cwd=tmp_path, PYTHONPATH=f"{PLUGIN}{os.pathsep}{tmp_path}")
    assert out.returncode == 0 and "shrink" in out.stdout
    warnings = [line for line in out.stderr.splitlines() if "plugin 'bad'" in line]
    assert len(warnings) == 1 and "no_such_module" in warnings[0]
