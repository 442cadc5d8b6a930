"""The tuning part of a report: what each method's sweep searched and chose, how the best
objective grows with the budget, and how sensitive the objective is to the threshold.

Built from MLflow alone: study parent runs (tags `kind=study`, `space.*`, `best.*`) and their
trial runs (tags `kind=trial`, `state`; params `trial.*`; metric `objective/0`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.plots import plt


def trials_frame(tracker, experiment: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(studies, trials): one row per study parent run and one per finished trial run."""
    studies, trials = [], []
    for r in tracker.runs(experiment):
        tags = r.data.tags
        if tags.get("kind") == "study":
            studies.append({
                "dataset": tags.get("dataset"), "method": tags.get("method"),
                "space": {k[6:]: v for k, v in tags.items() if k.startswith("space.")},
                "best": {k[5:]: float(v) for k, v in tags.items() if k.startswith("best.")},
                "best_value": r.data.metrics.get("best_value", math.nan),
            })  # fmt: skip
        elif tags.get("kind") == "trial" and r.info.status == "FINISHED" and "state" in tags:
            trials.append({
                "dataset": tags.get("dataset"), "method": tags.get("method"),
                "trial": int(tags.get("trial", -1)), "state": tags["state"],
                "reason": tags.get("reason", ""),
                "value": r.data.metrics.get("objective/0", math.nan),
                "params": {k[6:]: float(v) for k, v in r.data.params.items()
                           if k.startswith("trial.")},
            })  # fmt: skip
    return pd.DataFrame(studies), pd.DataFrame(trials)


def expected_best(values, budget: int, direction: str, resamples: int = 1000, seed: int = 0):
    """Expected best objective after k = 1..budget trials, drawing k of the observed trials with
    replacement (Lucic et al. 2018, "Are GANs Created Equal?"). Pruned or failed trials are NaN:
    they can be drawn but never win; a draw of only such trials has no best (NaN, ignored)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.full(budget, math.nan)
    rng = np.random.default_rng(seed)
    key = np.where(np.isfinite(v), v if direction == "min" else -v, np.inf)
    out = []
    for k in range(1, budget + 1):
        draws = key[rng.integers(0, v.size, size=(resamples, k))].min(axis=1)
        finite = draws[np.isfinite(draws)]
        best = finite.mean() if finite.size else math.nan
        out.append(best if direction == "min" else -best)
    return np.array(out)


def tuning_table(studies: pd.DataFrame, trials: pd.DataFrame) -> str:
    rows = []
    for s in studies.sort_values("method").itertuples():
        t = trials[trials.method == s.method] if not trials.empty else trials
        counts = {st: int((t.state == st).sum()) if not t.empty else 0
                  for st in ("COMPLETE", "PRUNED", "FAIL")}  # fmt: skip
        rows.append({
            "method": s.method,
            "search range": ", ".join(f"{k} {v}" for k, v in s.space.items()),
            "trials (complete / pruned / failed)": " / ".join(str(n) for n in counts.values()),
            "chosen": ", ".join(f"{k}={v:.4g}" for k, v in s.best.items()),
            "best objective": f"{s.best_value:.4g}" if math.isfinite(s.best_value) else "n/a",
        })  # fmt: skip
    return pd.DataFrame(rows).to_markdown(index=False)


def budget_plot(path: Path, trials: pd.DataFrame, direction: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for method, t in sorted(trials.groupby("method"), key=lambda x: x[0]):
        values = np.where(t.state == "COMPLETE", t.value, math.nan)
        curve = expected_best(values, len(t), direction)
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
        ax.set_title(f"{method}: {param}", fontsize=8)
    fig.supylabel("objective (tuning seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tuning_section(tracker, experiment: str, dataset: str, direction: str, fig_dir: Path) -> str:
    """Markdown for one dataset's sweeps ('' when the experiment has none)."""
    studies, trials = trials_frame(tracker, experiment)
    if studies.empty or dataset not in set(studies.dataset):
        return ""
    studies = studies[studies.dataset == dataset]
    trials = trials[trials.dataset == dataset] if not trials.empty else trials
    note = (
        "Each method's declared range searched by Optuna's seeded TPE sampler with the same "
        "budget, starting from its defaults, on tuning seeds that are never reporting seeds; "
        "the chosen configuration was then retrained on the reporting seeds above."
    )
    parts = [f"### Tuning\n\n{tuning_table(studies, trials)}\n\n{note}"]
    if not trials.empty:
        rel = fig_dir.name
        budget_plot(fig_dir / f"budget_{dataset}.png", trials, direction)
        sensitivity_plot(fig_dir / f"sensitivity_{dataset}.png", trials, studies)
        parts.append(f"![{dataset}: expected best objective by budget]({rel}/budget_{dataset}.png)")
        parts.append(f"![{dataset}: objective against threshold]({rel}/sensitivity_{dataset}.png)")
    return "\n\n".join(parts)
