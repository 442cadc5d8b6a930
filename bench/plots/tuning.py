"""Sweep figures: a study's optimization history, importances and objective per parameter
(MLflow artifacts), and the report's budget and sensitivity plots."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bench.plots import plt
from bench.plots.training import readable_log_ticks


def budget_plot(path: Path, curves: dict[str, np.ndarray]) -> None:
    """Expected best objective against the number of trials, one line per method."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for method, curve in sorted(curves.items()):
        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=method)
    ax.set_xlabel("trials (budget)")
    ax.set_ylabel("expected best objective")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def sensitivity_plot(path: Path, trials: pd.DataFrame, studies: pd.DataFrame) -> None:
    """Objective against each searched parameter, one panel per (method, parameter)."""
    panels = [(s.method, p, v) for s in studies.sort_values("method").itertuples()
              for p, v in s.space.items()]  # fmt: skip
    if not panels:
        return
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (method, param, space) in zip(axes.flat, panels, strict=False):
        t = trials[(trials.method == method) & (trials.state == "COMPLETE")]
        x = [p.get(param, math.nan) for p in t.params]
        ax.plot(x, t.value, "o", ms=4)
        ax.set_xscale("log" if space.startswith("log") else "linear")
        if space.startswith("log"):
            readable_log_ticks(ax.xaxis)
        ax.set_title(f"{method}: {param}", fontsize=8)
    fig.supylabel("objective (tuning seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def study_plots(folder: Path, study, space, completed) -> None:
    """Optimization history, parameter importances, objective against each parameter."""
    values = [t.value for t in completed]
    better = min if study.direction.name == "MINIMIZE" else max
    fig, ax = plt.subplots(figsize=(5, 3.4))
    numbers = [t.number for t in completed]
    ax.plot(numbers, values, "o", ms=4, label="trial")
    ax.step(numbers, [better(values[: i + 1]) for i in range(len(values))], where="post",
            label="best so far")  # fmt: skip
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "optimization_history.png", dpi=100)
    plt.close(fig)
    if len(completed) >= 2 and space:
        _importance(folder, study)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    for name, s in space.items():
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
            pts = [(t.params[name], _value(t)) for t in trials
                   if t.state.name == state and name in t.params]  # fmt: skip
            if pts:
                ax.plot(*zip(*pts, strict=True), marker, ls="", label=state.lower())
        ax.set_xscale("log" if s.log else "linear")
        if s.log:
            readable_log_ticks(ax.xaxis)
        ax.set_xlabel(name)
        ax.set_ylabel("objective (pruned: last report)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / f"objective_vs_{name}.png", dpi=100)
        plt.close(fig)


def _value(trial) -> float:
    if trial.value is not None:
        return trial.value
    reports = trial.intermediate_values
    return reports[max(reports)] if reports else math.nan


def _importance(folder: Path, study) -> None:
    import optuna

    try:
        with warnings.catch_warnings():  # "importances will be equal" with one parameter
            warnings.simplefilter("ignore", UserWarning)
            importances = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError):  # too few distinct values to fit the model
        return
    fig, ax = plt.subplots(figsize=(5, 2 + 0.3 * len(importances)))
    ax.barh(list(importances), list(importances.values()))
    ax.set_xlabel("importance (Optuna's default evaluator)")
    fig.tight_layout()
    fig.savefig(folder / "param_importances.png", dpi=100)
    plt.close(fig)
