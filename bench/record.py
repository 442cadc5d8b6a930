"""One run with its record: tags, params, metrics, summaries and artifacts in the tracker.

Tags say what the run is (dataset, method, family, seed, suite, config hash) and how it ended
(status `finished` or `diverged`). The config hash leaves out seed and device, so a suite finds
its finished runs again by (hash, seed) and resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import subprocess
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import RunConfig, flatten
from bench.metrics.base import declarations
from bench.params import ROLES
from bench.plots.samples import save_run_samples
from bench.plots.training import save_grad_norms
from bench.run import execute_population
from bench.system import artifact_folder, write_json
from bench.tracking import RunInProgress
from bench.trainer import RunResult
from bench.workers import thread_params


def config_hash(cfg: RunConfig) -> str:
    flat = {k: v for k, v in flatten(cfg).items() if k not in ("seed", "device")}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()[:12]


def method_label(cfg: RunConfig) -> str:
    return "+".join(m.name for m in cfg.methods)


def run_tags(cfg: RunConfig, suite: str = "", label: str | None = None) -> dict[str, Any]:
    families = sorted({m.cls.family for m in cfg.methods})
    return {
        "dataset": cfg.dataset,
        "method": method_label(cfg),
        "label": label or method_label(cfg),
        "family": "+".join(families),
        "seed": cfg.seed,
        "suite": suite,
        "config_hash": config_hash(cfg),
        "status": "running",
    }


def run_params(cfg: RunConfig) -> dict[str, str]:
    """The config, the metrics it declares (so reports need no code), the software."""
    extra = declarations(cfg.metrics) | software_versions() | {"git_commit": git_commit()}
    return flatten(cfg) | extra


def data_params(dataset) -> dict[str, str]:
    """The loaded data's description (sizes, classes, ...), logged once they are loaded."""
    return {f"dataset.{k}": str(v) for k, v in dataset.describe().items()}


def software_versions() -> dict[str, str]:
    import mlflow
    import torch
    import torch_fidelity

    return {
        "version.python": platform.python_version(),
        "version.torch": torch.__version__,
        "version.torch_fidelity": torch_fidelity.__version__,
        "version.numpy": np.__version__,
        "version.mlflow": mlflow.__version__,
        "version.bench": __import__("bench").__version__,
        "host.cpu": platform.processor() or platform.machine(),
        "host.device_name": _device_name(),
    }


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def summaries(result: RunResult) -> dict[str, float]:
    """Whole-run means of the gradient statistics, and how the run ended."""
    out = {
        "summary/wall_time_s": result.wall_time_s,
        "summary/train_time_s": result.train_time_s,
        "summary/diverged": float(result.status == "diverged"),
    }
    for role in sorted(ROLES):
        for key, name in (
            (f"clip/{role}/rate", "clip_rate"),
            (f"grad/{role}/norm_pre", "grad_norm_pre"),
        ):
            vals = [m[key] for _, m in result.history if key in m]
            if vals:
                out[f"summary/{name}/{role}"] = float(np.mean(vals))
    return out


def run_tracked(
    cfg: RunConfig, tracker, experiment: str, *, suite: str = "", label: str | None = None,
    progress: bool = False,
) -> RunResult:  # fmt: skip
    """Train and evaluate `cfg`, recording everything in `tracker` under `experiment`."""
    return run_tracked_population([cfg], tracker, experiment, suite=suite, labels=[label],
                                  progress=progress)[0]  # fmt: skip


def run_tracked_population(
    cfgs: list[RunConfig], tracker, experiment: str, *, suite: str = "",
    labels: list[str | None] | None = None, tags: list[dict] | None = None,
    progress: bool = False, leave_busy: bool = False,
) -> list[RunResult]:  # fmt: skip
    """Train `cfgs` as one population (bench.run.execute_population), each member recorded as
    its own run, as an ordinary run would be, plus a `population` tag (`<id>/<K>`) when K > 1.
    Members start together and each ends with its own status. `tags[i]`: member i's extra
    tags (its cell and axis coordinates, from the plan). `leave_busy`: a member whose (config,
    seed) another live process is recording is left to it (status `skipped`), not an error."""
    labels = labels or [None] * len(cfgs)
    extra = tags or [{}] * len(cfgs)
    population = f"{uuid.uuid4().hex[:8]}/{len(cfgs)}" if len(cfgs) > 1 else None
    results = [RunResult("skipped", 0, None, {}) for _ in cfgs]
    with contextlib.ExitStack() as stack:
        started = []
        for i, (cfg, label, more) in enumerate(zip(cfgs, labels, extra, strict=True)):
            mine = run_tags(cfg, suite, label) | more
            mine |= {"population": population} if population else {}
            cell = f"/{more['cell']}" if more.get("cell", "reference") != "reference" else ""
            name = f"{cfg.dataset}{cell}/{mine['label']}/seed{cfg.seed}"
            try:
                run = stack.enter_context(tracker.start_run(experiment, name, mine,
                                                            run_params(cfg)))  # fmt: skip
            except RunInProgress:
                if not leave_busy:
                    raise
                continue
            started.append((i, run))
        if started:
            _train_started(cfgs, started, results, progress)
    return results


def _train_started(cfgs, started, results: list, progress: bool) -> None:
    """Train the members that started (index, run) as one population; fill `results`."""
    mine = [cfgs[i] for i, _ in started]
    runs = [run for _, run in started]

    def on_data(data) -> None:
        for run, cfg in zip(runs, mine, strict=True):
            run.log_params(data_params(data) | thread_params())
            run.log_dataset(cfg.dataset, data.describe())

    trained = execute_population(mine, [r.log_metrics for r in runs], progress, on_data)
    for (i, run), cfg, result in zip(started, mine, trained, strict=True):
        if result.error is not None:
            raise result.error  # the tracker's own failure: every member ends FAILED
        _record_end(run, cfg, result)
        results[i] = result


def _record_end(run, cfg: RunConfig, result: RunResult) -> None:
    """Summaries, artifacts and the end tags of one finished or diverged run."""
    run.log_metrics(result.steps, summaries(result))
    with artifact_folder() as folder:
        write_artifacts(folder, cfg, result)
        run.log_artifacts(folder)
    end = {"status": result.status}
    if result.diverged_step is not None:
        end["diverged_step"] = result.diverged_step
    run.set_tags(end)


def write_artifacts(folder: Path, cfg: RunConfig, result: RunResult) -> None:
    write_json(folder, "config.json", cfg.to_dict())
    write_json(folder, "result.json", {
        "status": result.status, "steps": result.steps, "diverged_step": result.diverged_step,
        "metrics": result.metrics,
    })  # fmt: skip
    save_grad_norms(folder / "grad_norms.png", result.history)
    if result.samples is not None:
        samples = result.samples.numpy()
        np.save(folder / "samples.npy", samples)
        title = f"{cfg.dataset} {method_label(cfg)} seed {cfg.seed}"
        save_run_samples(folder / "samples.png", samples, title, cfg.data_cls.landmarks())
