"""What a study leaves in its MLflow parent run: search ranges, best parameters, and plots
(optimization history, parameter importance, objective against each searched parameter)."""

from __future__ import annotations

import json
import math
import warnings

from bench.methods import method_registry, search_space
from bench.tracking import artifact_folder


def study_tags(cfg) -> dict[str, str]:
    return {"kind": "study", "study": cfg.study_name, "dataset": cfg.dataset,
            "method": cfg.method, "suite": cfg.suite}  # fmt: skip


def log_study_artifacts(cfg, study, tracker, parent, best: dict[str, float]) -> None:
    if parent.run_id is None:  # the null tracker keeps nothing
        return
    space = search_space(method_registry.get(cfg.method))
    # Tags, not params: a re-run with a larger budget may change them, and MLflow params are
    # immutable.
    ranges = {f"space.{k}": f"{'log' if s.log else 'uniform'}[{s.low}, {s.high}]"
              for k, s in space.items()}  # fmt: skip
    parent.set_tags(
        ranges | {f"best.{k}": repr(v) for k, v in best.items()}
        | {"trials": cfg.trials, "tuning_seeds": ",".join(map(str, cfg.tuning_seeds)),
           "pruner": cfg.pruner, "multi_objective": cfg.multi_objective}
    )  # fmt: skip
    completed = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if completed and not cfg.multi_objective:
        sign = 1 if study.direction.name == "MINIMIZE" else -1
        parent.log_metrics(0, {"best_value": min(sign * t.value for t in completed) * sign})
    with artifact_folder() as folder:
        (folder / "best_params.json").write_text(json.dumps(best, indent=2))
        if completed and not cfg.multi_objective:
            _plots(folder, study, space, completed)
        parent.log_artifacts(folder)


def _plots(folder, study, space, completed) -> None:
    from bench.plots import plt

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
        _importance(folder, study, plt)
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    for name, s in space.items():
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
            pts = [(t.params[name], _value(t)) for t in trials
                   if t.state.name == state and name in t.params]  # fmt: skip
            if pts:
                ax.plot(*zip(*pts, strict=True), marker, ls="", label=state.lower())
        ax.set_xscale("log" if s.log else "linear")
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


def _importance(folder, study, plt) -> None:
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
