"""The tuning part of a report: what each method's sweep searched and chose, how the best
objective grows with the budget, and how sensitive the objective is to the threshold.

Built from MLflow alone: study parent runs (tags `kind=study`, `space.*`, `best.*`) and their
trial runs (tags `kind=trial`, `state`, `member_values`; params `trial.*`; metric
`objective/0`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.plots.tuning import budget_plot, sensitivity_plot
from bench.report.stats import bootstrap_ci


def trials_frame(tracker, experiment: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(studies, trials): one row per study parent run and one per finished trial run."""
    studies, trials = [], []
    for r in tracker.runs(experiment):
        tags = r.tags
        if tags.get("kind") == "study":
            studies.append({
                "study": tags.get("study"), "sampler_seed": int(tags.get("sampler_seed", 0)),
                "dataset": tags.get("dataset"), "method": tags.get("method"),
                "space": {k[6:]: v for k, v in tags.items() if k.startswith("space.")},
                "best": {k[5:]: float(v) for k, v in tags.items() if k.startswith("best.")},
                "best_value": r.metrics.get("best_value", math.nan),
            })  # fmt: skip
        elif tags.get("kind") == "trial" and r.status == "FINISHED" and "state" in tags:
            trials.append({
                "study": tags.get("study"), "members": json.loads(tags.get("member_values", "[]")),
                "dataset": tags.get("dataset"), "method": tags.get("method"),
                "trial": int(tags.get("trial", -1)), "state": tags["state"],
                "reason": tags.get("reason", ""),
                "value": r.metrics.get("objective/0", math.nan),
                "params": {k[6:]: float(v) for k, v in r.params.items()
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


def tuning_table(studies: pd.DataFrame, trials: pd.DataFrame, direction: str) -> str:
    rows = []
    for s in studies.sort_values(["method", "sampler_seed"]).itertuples():
        t = trials[trials.study == s.study] if not trials.empty else trials
        counts = {st: int((t.state == st).sum()) if not t.empty else 0
                  for st in ("COMPLETE", "PRUNED", "FAIL")}  # fmt: skip
        ranked = _ranked(t, direction)
        rows.append({
            "method": s.method, "sampler seed": s.sampler_seed,
            "search range": ", ".join(f"{k} {v}" for k, v in s.space.items()),
            "trials (complete / pruned / failed)": " / ".join(str(n) for n in counts.values()),
            "chosen": ", ".join(f"{k}={v:.4g}" for k, v in s.best.items()),
            "best objective": f"{s.best_value:.4g}" if math.isfinite(s.best_value) else "n/a",
            "its mean [95% CI]": _interval(ranked[0]) if ranked else "",
            "runner-up": _runner_up(ranked[1]) if len(ranked) > 1 else "",
        })  # fmt: skip
    return pd.DataFrame(rows).to_markdown(index=False)


def _ranked(t: pd.DataFrame, direction: str) -> list:
    """The study's completed trials, best first."""
    if t.empty:
        return []
    done = t[(t.state == "COMPLETE") & t.value.notna()]
    return list(done.sort_values("value", ascending=direction == "min").itertuples())


def _interval(trial) -> str:
    """A trial's objective over its members: mean with a 95 % BCa interval (members: tuning
    seeds x cells), n/a for trials recorded before members were kept."""
    values = np.asarray(trial.members, dtype=float)
    if values.size < 2:
        return "n/a"
    mean, low, high = bootstrap_ci(values)
    return f"{mean:.3g} [{low:.3g}, {high:.3g}] (n={values.size})"


def _runner_up(trial) -> str:
    params = ", ".join(f"{k}={v:.4g}" for k, v in trial.params.items())
    return f"{params}: {_interval(trial)}"


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
        "a trial's objective is its mean over every (cell, tuning seed) of the study that "
        "differs from the reference in learning rates or betas only, with its 95 % BCa interval "
        "over those members beside the runner-up's, so that a choice within the noise reads as "
        "such; a second sampler seed's choice, where there is one, shows whether the search "
        "lands in the same place. The first sampler seed's choice was then retrained on the "
        "reporting seeds above (the `(tuned)` rows; the published default keeps its own row)."
    )
    parts = [f"### Tuning\n\n{tuning_table(studies, trials, direction)}\n\n{note}"]
    first = set(studies[studies.sampler_seed == studies.sampler_seed.min()].study)
    trials = trials[trials.study.isin(first)] if not trials.empty else trials  # plots: one each
    if not trials.empty:
        rel = fig_dir.name
        curves = {
            method: expected_best(np.where(g.state == "COMPLETE", g.value, math.nan), len(g),
                                  direction)
            for method, g in trials.groupby("method")
        }  # fmt: skip
        budget_plot(fig_dir / f"budget_{dataset}.png", curves)
        sensitivity_plot(fig_dir / f"sensitivity_{dataset}.png", trials, studies)
        parts.append(f"![{dataset}: expected best objective by budget]({rel}/budget_{dataset}.png)")
        parts.append(f"![{dataset}: objective against threshold]({rel}/sensitivity_{dataset}.png)")
    return "\n\n".join(parts)
