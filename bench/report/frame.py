"""MLflow -> tidy pandas frames. Reports are built only from what the tracking store holds, so
they can be rebuilt at any time, from a local store or a remote server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DONE = ("finished", "diverged")
TAGS = ("dataset", "method", "label", "family", "suite", "status", "config_hash")


def runs_frame(tracker, experiment: str) -> pd.DataFrame:
    """One row per completed run: tags, final `eval/*` and `summary/*` metrics, params (dict)."""
    rows = []
    for r in tracker.runs(experiment, finished_only=True):
        tags = r.tags
        if tags.get("status") not in DONE or tags.get("kind") in ("study", "trial"):
            continue
        row = {"run_id": r.run_id, "seed": int(tags.get("seed", -1))}
        row |= {t: tags.get(t, "") for t in TAGS}
        row["start_time"] = pd.Timestamp(r.start_time, unit="ms")
        row |= {k: v for k, v in r.metrics.items() if k.startswith(("eval/", "summary/"))}
        row["params"] = dict(r.params)
        # The run's cell of the suite's axes (bench/plan.py); runs without are the reference.
        row["cell"] = tags.get("cell", "reference")
        row["reference_cell"] = tags.get("reference_cell", "true") == "true"
        row |= {k: v for k, v in tags.items() if k.startswith("axis.")}
        row["seed_set"] = tags.get("seed_set", "main")  # a suite's replication seeds
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    # A (config, seed) finished twice (e.g. two suites writing at once) counts once: the latest.
    df = df.sort_values("start_time").drop_duplicates(["config_hash", "seed"], keep="last")
    return df.sort_values(["dataset", "label", "seed"]).reset_index(drop=True)


def metric_history(tracker, runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Long frame (run_id, label, seed, step, value) of one metric over training."""
    rows = []
    for r in runs.itertuples():
        for step, value in tracker.metric_history(r.run_id, key):
            rows.append((r.run_id, r.label, r.seed, step, value))
    return pd.DataFrame(rows, columns=["run_id", "label", "seed", "step", "value"])


def download_samples(tracker, run_id: str, folder: Path) -> np.ndarray | None:
    """The final samples a run stored as `samples.npy`, or None."""
    path = tracker.download_artifact(run_id, "samples.npy", folder)
    return None if path is None else np.load(path, allow_pickle=False)
